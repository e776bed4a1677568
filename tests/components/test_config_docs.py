"""The README's configuration reference is generated from the models and must be current."""

from __future__ import annotations

from pydantic import BaseModel

from components import config as config_module
from components.config_docs import README, render


def test_readme_config_reference_is_up_to_date() -> None:
    assert render() in README.read_text(), "README.md is stale: run `python -m components.config_docs`"


def test_every_config_field_has_a_description() -> None:
    missing = []
    for name in dir(config_module):
        model = getattr(config_module, name)
        if (
            isinstance(model, type)
            and issubclass(model, BaseModel)
            and model.__module__ == config_module.__name__
        ):
            missing += [
                f"{name}.{field}" for field, info in model.model_fields.items() if not info.description
            ]
    assert not missing, f"fields without a description (the README reference needs one): {missing}"
