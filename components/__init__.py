"""Reusable Pulumi components and pure builders for ray-on-eks.

Components never read ``pulumi.Config`` and never import each other: ``__main__.py`` wires them.
"""
