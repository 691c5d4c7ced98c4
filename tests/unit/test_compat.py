"""Contracts of the private library internals tunelab uses (all in tunelab/models/compat.py): each test
fails loudly when an upgrade of transformers or torch changes what the fence relies on."""

import ast
from pathlib import Path

import pytest
import torch
from transformers import DynamicCache

from tunelab.models import compat

PKG = Path(__file__).resolve().parents[2] / "src" / "tunelab"
# Names that only the fence may touch: private attributes, private probes, unstable cache internals.
FENCED = {"_is_amx_tile_supported", "_init_amx", "_attn_implementation", "hf_quantizer", "DynamicLayer",
          "DynamicSlidingWindowLayer", "activate_past_recording", "_prepare_inputs"}


def names_used(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute):
            out.add(node.attr)
        elif isinstance(node, ast.Name):
            out.add(node.id)
        elif isinstance(node, ast.alias):
            out.add(node.name.split(".")[-1])
    return out


def test_no_module_outside_the_fence_touches_library_internals():
    bad = {str(p.relative_to(PKG)): sorted(names_used(p) & FENCED) for p in PKG.rglob("*.py")
           if p.name != "compat.py"}
    assert not {k: v for k, v in bad.items() if v}, "move these uses into tunelab/models/compat.py"


@pytest.fixture(scope="module")
def gemma(tiny_gemma):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_gemma, dtype=torch.float32).eval()


def test_cpu_amx_probe_answers_a_bool():
    assert isinstance(compat.cpu_has_amx(), bool)
    assert callable(torch.cpu._is_amx_tile_supported)  # the probe itself must still exist


def test_attn_implementation_reads_and_follows_set(gemma):
    before = compat.attn_implementation(gemma)
    assert before in ("sdpa", "eager")
    gemma.set_attn_implementation("eager")
    assert compat.attn_implementation(gemma) == "eager"
    gemma.set_attn_implementation(before)


def test_layer_checkpointing_switch_exists_and_changes_saved_memory(gemma):
    layers = gemma.model.layers
    assert all(compat.has_layer_checkpointing(layer) for layer in layers)
    gemma.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    gemma.train()
    ids = torch.randint(5, 60, (1, 48))

    def saved() -> int:
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            gemma(input_ids=ids).logits.sum()
        return total[0]

    for layer in layers:
        compat.set_layer_checkpointing(layer, False)
    plain = saved()
    for layer in layers:
        compat.set_layer_checkpointing(layer, True)
    checkpointed = saved()
    gemma.gradient_checkpointing_disable()
    gemma.eval()
    assert checkpointed < plain  # the flag really switches recomputation on


def test_cache_fork_stack_and_row_round_trip(gemma):
    """A dialog cache forks apart, and stacked rows decode as each row alone would."""
    ids = [torch.randint(5, 60, (1, n)) for n in (7, 12)]
    caches = []
    for x in ids:
        cache = compat.new_dialog_cache(gemma)
        with torch.no_grad():
            gemma(input_ids=x, past_key_values=cache, use_cache=True)
        caches.append(cache)
    assert all(compat.stackable(c) for c in caches)
    fork = compat.fork_cache(caches[0])
    fork.crop(-4)
    assert caches[0].get_seq_length() == 7 and fork.get_seq_length() == 3
    nxt = torch.tensor([[9], [11]])
    alone = []
    for x, c, t in zip(ids, caches, nxt):
        with torch.no_grad():
            alone.append(gemma(input_ids=t[None], past_key_values=compat.fork_cache(c), use_cache=True,
                               position_ids=torch.tensor([[x.shape[1]]])).logits[0, -1])
    lengths = [x.shape[1] for x in ids]
    stacked = compat.stack_caches(caches, lengths)
    width = max(lengths)
    mask = torch.zeros(2, width + 1, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, width - n:] = 1
    with torch.no_grad():
        out = gemma(input_ids=nxt, past_key_values=stacked, attention_mask=mask, use_cache=True,
                    position_ids=torch.tensor([[n] for n in lengths]))
    for b in range(2):
        torch.testing.assert_close(out.logits[b, -1], alone[b], rtol=1e-4, atol=1e-4)
        row = compat.cache_row(stacked, b, lengths[b] + 1)
        assert row.layers[0].keys.shape[0] == 1 and compat.stackable(row)


def test_a_dialog_cache_is_cut_back_past_the_sliding_window(gemma):
    """Fed in two passes past gemma's 64-token window, a dialog cache cut back to 40 positions (inside the
    window's past) decodes what a cache fed those 40 alone does; one that lost its past says so."""
    ids = torch.arange(100)[None] % 60 + 5
    cache = compat.new_dialog_cache(gemma)
    with torch.no_grad():
        gemma(input_ids=ids[:, :70], cache=cache, use_cache=True)
        gemma(input_ids=ids[:, 70:], cache=cache, use_cache=True)
    assert compat.crop_dialog_cache(cache, 40) and cache.get_seq_length() == 40
    fresh = compat.new_dialog_cache(gemma)
    nxt = torch.tensor([[7, 8, 9]])
    with torch.no_grad():
        gemma(input_ids=ids[:, :40], cache=fresh, use_cache=True)
        want = gemma(input_ids=nxt, cache=fresh, use_cache=True).logits
        got = gemma(input_ids=nxt, cache=cache, use_cache=True).logits
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert not compat.crop_dialog_cache(cache, 50)  # longer than it holds
    with torch.no_grad():
        gemma(input_ids=ids[:, :60], cache=cache, use_cache=True)  # 103 positions
    cache.crop(0)  # transformers' crop trims the sliding layers to their window: no way back
    assert not compat.crop_dialog_cache(cache, 40) and cache.get_seq_length() == 103


@pytest.mark.parametrize("family", ["gemma", "llama"])
def test_a_growing_stacked_cache_decodes_as_the_copying_one(family, gemma, tiny_llama):
    """Stacked with spare room, a cache writes new tokens in place (past its room, past gemma's 64-token
    window) and every step's logits equal those of the plain stack; its rows come back as plain layers."""
    from transformers import AutoModelForCausalLM

    model = gemma if family == "gemma" else AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    lengths = [30, 50]
    stacks = []
    for spare in (0, 8):
        caches = []
        for n in lengths:
            cache = DynamicCache(config=model.config)
            with torch.no_grad():
                model(input_ids=torch.arange(5, 5 + n)[None] % 60 + 5, past_key_values=cache, use_cache=True)
            caches.append(cache)
        stacks.append(compat.stack_caches(caches, lengths, spare=spare))
    width = max(lengths)
    for step in range(40):
        mask = torch.zeros(2, width + step + 1, dtype=torch.long)
        for b, n in enumerate(lengths):
            mask[b, width - n:] = 1
        kw = dict(input_ids=torch.tensor([[7 + step % 40], [9]]), attention_mask=mask, use_cache=True,
                  position_ids=torch.tensor([[n + step] for n in lengths]))
        with torch.no_grad():
            plain, grown = (model(past_key_values=c, **kw).logits[:, -1] for c in stacks)
        torch.testing.assert_close(grown, plain, rtol=1e-5, atol=1e-5)
    assert type(stacks[1].layers[0]).__name__.startswith("Growing")
    row = compat.cache_row(stacks[1], 1, lengths[1] + 40)
    assert compat.stackable(row)
    torch.testing.assert_close(row.layers[0].keys, compat.cache_row(stacks[0], 1, lengths[1] + 40).layers[0].keys)


def test_drop_quantizer_clears_both_places():
    from types import SimpleNamespace

    m = SimpleNamespace(hf_quantizer=object(), config=SimpleNamespace(quantization_config={"quant_method": "gguf"}))
    compat.drop_quantizer(m)
    assert m.hf_quantizer is None and not hasattr(m.config, "quantization_config")


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_gemma"])  # gemma: a 70-token prompt past its 64-token window
@pytest.mark.parametrize("method", ["prefix_tuning", "prompt_tuning", "p_tuning"])
def test_a_prompt_learning_model_generates_as_its_forward_pass(family, method, request):
    """generate() equals an argmax loop over the forward pass, which puts the virtual tokens (or prefix) first
    once. transformers 5.2x passes its cache as `cache` where peft looks for `past_key_values`: without the
    fence's fix prefix tuning dropped its prefix and prompt / p-tuning inserted theirs again at every step."""
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(family), dtype=torch.float32)
    config = {"prefix_tuning": PrefixTuningConfig, "prompt_tuning": PromptTuningConfig,
              "p_tuning": PromptEncoderConfig}[method](task_type="CAUSAL_LM", num_virtual_tokens=4)
    model = get_peft_model(base, config).eval()
    with torch.no_grad():
        for p in model.prompt_encoder.parameters():
            p.normal_(0, 2.0)  # a prefix that changes the outputs
    ids = torch.randint(5, 60, (1, 70 if family == "tiny_gemma" else 9))

    def generate():
        return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=12,
                              do_sample=False, pad_token_id=0)[0, ids.shape[1]:].tolist()

    loop, seq = [], ids
    with torch.no_grad():
        for _ in range(12):
            loop.append(int(model(input_ids=seq, attention_mask=torch.ones_like(seq)).logits[0, -1].argmax()))
            seq = torch.cat([seq, torch.tensor([[loop[-1]]])], 1)
        before = generate()
        assert compat.prompt_learning_generation(model) and not compat.prompt_learning_generation(model)  # once
        after = generate()
    assert after == loop and before != loop  # the second: the unfixed path is still broken upstream


def test_prompt_learning_generation_leaves_a_model_without_peft_causal_lm_hook_alone(tiny_llama):
    """A prompt-tuned classifier (peft's sequence-classification wrapper) has no causal-LM prepare hook to
    wrap: the patch declines and its prepare_inputs_for_generation stays the same object."""
    from peft import PromptTuningConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(tiny_llama, num_labels=2, dtype=torch.float32)
    model = get_peft_model(base, PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=4))
    assert not hasattr(model, "base_model_prepare_inputs_for_generation")
    before = getattr(model, "prepare_inputs_for_generation", None)
    assert compat.prompt_learning_generation(model) is False
    assert getattr(model, "prepare_inputs_for_generation", None) is before


@pytest.mark.parametrize("family", ["gemma", "llama"])
def test_frozen_context_hidden_equals_the_plain_forward_at_its_columns(family, gemma, tiny_llama):
    """The two passes read a decoder's cache.update protocol and its prepared-mask argument (a dict by layer type
    for gemma, whose 64-token window the 150-token rows pass): the hidden states at the chosen columns are the
    plain forward's, and only the second pass's tokens carry gradient."""
    from transformers import AutoModelForCausalLM

    model = gemma if family == "gemma" else AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    decoder = model.get_decoder()
    assert compat.frozen_context_supported(decoder) == ""
    ids = torch.arange(300).reshape(2, 150) % 60 + 5
    cols = torch.tensor([0, 3, 70, 71, 72, 140, 149])
    with torch.no_grad():
        plain = decoder(input_ids=ids, use_cache=False).last_hidden_state
    embed = decoder.embed_tokens.weight
    embed.requires_grad_(True)
    try:
        got = compat.frozen_context_hidden(decoder, ids, cols)
        torch.testing.assert_close(got, plain[:, cols], rtol=1e-5, atol=1e-5)
        got.sum().backward()
        touched = set(embed.grad.abs().sum(1).nonzero().squeeze(1).tolist())
        assert touched == set(ids[:, cols].flatten().tolist())  # only the columns' own tokens
    finally:
        embed.requires_grad_(False)
        embed.grad = None
