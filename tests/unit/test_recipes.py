"""Every recipe in recipes/ loads into a valid config whose method is registered."""

from pathlib import Path

import pytest

from tunelab.config import load_config
from tunelab.methods import METHODS

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads(path):
    cfg = load_config(path)
    assert cfg.method.name in METHODS
    if path.name.startswith("hotel_"):
        # a method's SFT recipe is named after its method, a preference task's (hotel_dpo ...) after its task
        named = cfg.method.name if cfg.data.task == "sft" else cfg.data.task
        assert path.stem.removesuffix("_gpu") == f"hotel_{named}" and cfg.data.domain == "hotel"
        assert cfg.data.record_view == "relevant"  # every hotel run reads its records as hotel_lora's did
    if cfg.data.domain:  # a domain's recipe uses its default system prompt, as chat and serve will
        from tunelab.domains import get_domain

        assert cfg.data.system_prompt == get_domain(cfg.data.domain).system_prompt


def test_every_method_has_a_hotel_recipe():
    assert {p.stem.removeprefix("hotel_").removesuffix("_gpu") for p in RECIPES
            if p.name.startswith("hotel_") and load_config(p).data.task == "sft"} == set(METHODS)
