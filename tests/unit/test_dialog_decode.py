"""Dialog decoding (one KV cache per dialog, the gold turn as a draft) gives one-at-a-time greedy outputs.

The tiny models here are random but not degenerate (untied output layer, wider init), so their
greedy replies vary and a wrong cache shows. They run in float64, so a chunked forward pass cannot
flip a near tie that a one-token pass would not: any difference is a bug.
"""

from __future__ import annotations

import pytest

from tests.conftest import make_tokenizer
from tunelab.data.schema import Turn
from tunelab.data.template import get_template
from tunelab.infer.dialog import generate_dialogs
from tunelab.infer.engine import ChatEngine, GenerationOptions
from tunelab.infer.lookup import NgramLookup

SYSTEM = "你是酒店预订助手，用工具查询再根据结果回答客人。"
USERS = ["hello, a hotel please", "好的谢谢，再查一下", "what about the price?", "不客气，再见"]


@pytest.fixture(scope="module", params=["llama", "gemma"])
def engine(request, tmp_path_factory) -> ChatEngine:
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

    tok = make_tokenizer(tmp_path_factory.mktemp("tok"))
    common = dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  initializer_range=0.1, tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
                  eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    if request.param == "gemma":
        # a window far shorter than the prompts: the sliding layers are full when drafts are rolled back
        cfg = Gemma3TextConfig(head_dim=16, sliding_window=32, final_logit_softcapping=30.0,
                               layer_types=["sliding_attention", "full_attention"], **common)
    else:
        cfg = LlamaConfig(**common)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).double()
    template = get_template("gemma" if request.param == "gemma" else "chatml", tok)
    engine = ChatEngine(model, tok, template, SYSTEM)
    # a turn's text cannot hold control tokens (they re-render as plain characters), so a reply that
    # is to be its own draft must not emit them; only the stop tokens stay reachable
    with torch.no_grad():
        model.get_output_embeddings().weight[[i for i in tok.all_special_ids if i not in engine.stop_ids]] = 0
    return engine


def dialog(engine: ChatEngine, kinds: str, opts: GenerationOptions) -> list[tuple[list[Turn], Turn]]:
    """Items of one dialog, one per letter of `kinds`, whose gold turn is the model's own reply (r), its
    first half then other text (p), or other text (w)."""
    turns, items = [], []
    for k, kind in enumerate(kinds):
        context = turns + [Turn("user", content=USERS[k % len(USERS)])]
        own = engine.reply(context, opts).content
        text = {"r": own, "p": own[: len(own) // 2] + "酒店在哪里", "w": "推荐您去北京凯港快捷酒店"}[kind]
        gold = Turn("assistant", content=text or "好的")
        items.append((context, gold))
        turns = context + [gold]
    return items


def one_at_a_time(engine, items, opts):
    return [engine.reply(context, opts) for context, _ in items]


@pytest.mark.parametrize("batch_size", [1, 2, 8])  # items decoded alone, in a full batch, in a draining one
def test_outputs_equal_one_at_a_time_for_right_partly_right_and_wrong_drafts(engine, batch_size):
    opts = GenerationOptions(max_new_tokens=24)
    items = dialog(engine, "rpwrpw", opts)
    preds, stats = generate_dialogs(engine, items, opts, batch_size=batch_size, progress=False)
    assert preds == one_at_a_time(engine, items, opts)
    assert stats["items"] == 6 and stats["items_from_draft"] >= 2  # the right drafts need no decoding
    assert 0 < stats["draft_tokens_accepted"] < stats["draft_tokens"]
    assert stats["prompt_tokens_reused"] > 0.6  # the items after the first extend the cache


def test_several_dialogs_and_no_gold(engine):
    opts = GenerationOptions(max_new_tokens=16)
    items = dialog(engine, "pwr", opts) + dialog(engine, "wrp", opts)
    items.append((items[-1][0], None))  # a context without a gold turn: no draft
    preds, _ = generate_dialogs(engine, items, opts, progress=False)
    assert preds == one_at_a_time(engine, items, opts)


@pytest.mark.parametrize("max_new", [1, 3, 7])
def test_max_new_tokens_is_respected(engine, max_new):
    long_opts = GenerationOptions(max_new_tokens=24)
    items = dialog(engine, "rpw", long_opts)  # gold drafts longer than max_new
    opts = GenerationOptions(max_new_tokens=max_new)
    preds, _ = generate_dialogs(engine, items, opts, progress=False)
    assert preds == one_at_a_time(engine, items, opts)
    assert all(len(engine.renderer.ids(p.content)) <= max_new for p in preds)


def shared(a: list[int], b: list[int]) -> int:
    return next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


@pytest.mark.parametrize("edit", [0, 2])  # the first user turn, or one past gemma's 32-token window
def test_a_context_that_is_no_extension_reuses_the_prefix_it_shares(engine, edit):
    opts = GenerationOptions(max_new_tokens=16)
    first, second, third = dialog(engine, "pwr", opts)
    # the third item's context with an earlier turn rewritten (as a record view re-renders earlier records)
    context = list(third[0])
    context[edit] = Turn("user", content=context[edit].content.upper() + "?")
    items = [first, second, (context, third[1]), first]
    preds, stats = generate_dialogs(engine, items, opts, progress=False)
    assert preds == one_at_a_time(engine, items, opts)
    prompts = [engine.renderer.prompt_ids(c) for c, _ in items]
    fed = [p + engine.renderer.body_ids(g) for p, (_, g) in zip(prompts, items)]
    # each item reuses what it shares with the item before's prompt + gold turn, short of its own last token
    reused = [0] + [min(shared(prompts[k], fed[k - 1]), len(prompts[k]) - 1) for k in range(1, 4)]
    assert reused[1] == len(fed[0]) and 0 < reused[2] < len(fed[1])
    if edit:  # cut back inside the past of gemma's sliding window; the first prompt lies whole in the cache
        assert reused[2] > 32 and reused[3] == len(prompts[3]) - 1
    else:
        assert reused[3] < len(prompts[3]) - 1
    assert stats["prompt_tokens_reused"] == round(sum(reused) / sum(map(len, prompts)), 3)


def test_sampling_falls_back_to_batched_generation(engine):
    opts = GenerationOptions(max_new_tokens=4, temperature=0.7)
    preds, stats = generate_dialogs(engine, dialog(engine, "w", GenerationOptions(max_new_tokens=4)), opts,
                                    progress=False)
    assert len(preds) == 1 and "draft_tokens" not in stats


def test_lookup_guesses_what_followed_the_longest_latest_match():
    look = NgramLookup(longest=3)
    look.add([1, 2, 3, 4, 5])
    look.add([9, 2, 3, 7, 8])
    assert look.guess([0, 2, 3], 2) == [7, 8]  # (2, 3) last seen before 7
    assert look.guess([1, 2, 3], 5) == [4, 5]  # (1, 2, 3) beats the shorter, later (2, 3)
    assert look.guess([6], 3) == [] and look.guess([1], 0) == []
    look.add([5, 2, 3, 6], priority=1)
    look.add([0, 2, 3, 1])  # later, but of a lower priority
    assert look.guess([2, 3], 4) == [6]


def test_unmerged_lora_goes_the_dialog_way_and_prompt_tuning_falls_back(engine):
    from peft import LoraConfig, PromptTuningConfig, get_peft_model

    from tunelab.infer.dialog import drafts_apply

    opts = GenerationOptions(max_new_tokens=12)
    # the dev evaluation after training decodes with the PeftModel itself, adapter not merged
    lora = get_peft_model(engine.model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_engine = ChatEngine(lora, engine.tokenizer, engine.template, SYSTEM)
    try:
        items = dialog(peft_engine, "pw", opts)
        assert drafts_apply(peft_engine, opts)
        preds, _ = generate_dialogs(peft_engine, items, opts, progress=False)
        assert preds == one_at_a_time(peft_engine, items, opts)
    finally:
        lora.unload()  # the module-scoped engine's model, without the adapter again
    prompt = get_peft_model(engine.model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
    assert drafts_apply(ChatEngine(prompt, engine.tokenizer, engine.template), opts)
    assert not drafts_apply(ChatEngine(prompt, engine.tokenizer, engine.template),
                            GenerationOptions(max_new_tokens=12, temperature=0.7))


@pytest.mark.parametrize("method", ["prompt_tuning", "p_tuning", "prefix_tuning"])
def test_prompt_learning_decodes_the_dialog_way_with_its_virtual_tokens_first(engine, method):
    """The cache opens with the adapter's virtual tokens (or prefix), and later positions count from there:
    one-at-a-time `generate` through peft gives the same replies, and a dialog's items reuse the cache."""
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

    config = {"prompt_tuning": PromptTuningConfig, "p_tuning": PromptEncoderConfig,
              "prefix_tuning": PrefixTuningConfig}[method](task_type="CAUSAL_LM", num_virtual_tokens=5)
    import torch

    torch.manual_seed(1)
    model = get_peft_model(engine.model, config).double()
    peft_engine = ChatEngine(model, engine.tokenizer, engine.template, SYSTEM)
    opts = GenerationOptions(max_new_tokens=16)
    items = dialog(peft_engine, "rpwr", opts) + dialog(peft_engine, "wr", opts)
    preds, stats = generate_dialogs(peft_engine, items, opts, batch_size=2, progress=False)
    assert preds == one_at_a_time(peft_engine, items, opts)
    assert stats["items_from_draft"] >= 2 and stats["prompt_tokens_reused"] > 0.5
    assert preds != one_at_a_time(engine, items, opts)  # the virtual tokens change the replies


def test_draft_rows_stop_at_the_first_departure(engine):
    """The output layer runs on each item's rows only until its greedy tokens leave the draft; the tokens it gives
    are those of the full logits."""
    import torch

    from tunelab.infer.dialog import _draft_greedy
    from tunelab.models.compat import new_dialog_cache

    opts = GenerationOptions(max_new_tokens=40)
    (context, gold), = dialog(engine, "r", opts)
    prompt = engine.renderer.prompt_ids(context)
    right = engine.renderer.body_ids(gold)
    wrong = right[:2] + [t for t in right[2:] if t not in engine.stop_ids][::-1] * 3  # leaves after 2 at most
    x = torch.tensor([prompt + wrong])
    with torch.no_grad():
        full = engine.model(input_ids=x).logits[0].max(-1).indices.tolist()
    start = len(prompt) - 1
    rows = []
    hook = engine.model.get_output_embeddings().register_forward_hook(lambda m, i, o: rows.append(i[0].shape[0]))
    try:
        with torch.no_grad():
            (tokens,) = _draft_greedy(engine.model, x, new_dialog_cache(engine.model), [start], [wrong])
    finally:
        hook.remove()
    departs = next(k for k, (g, d) in enumerate(zip(full[start:], wrong)) if g != d)
    assert departs <= 2 and departs < len(tokens) <= 8 and tokens == full[start:start + len(tokens)]
    assert sum(rows) <= 16 < len(wrong)  # one round of 8 rows (padded to MIN_ROWS), not one per drafted token
