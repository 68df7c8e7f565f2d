"""CLIP text encoder on prompt embeddings and the CLIP-ReID prompt learner."""

from __future__ import annotations

import open_clip
import pytest
import torch
from open_clip.transformer import QuickGELU, TextTransformer

from tfclip_torchreid.models.complexity import text_macs
from tfclip_torchreid.models.prompt_learner import (
    CLIP_VOCAB_SIZE,
    PERSON_TEMPLATE,
    VEHICLE_TEMPLATE,
    PromptLearner,
)
from tfclip_torchreid.models.text_encoder import CLIPTextEncoder, text_state_dict

TINY = dict(embed_dim=32, context_length=77, width=64, heads=2, layers=2)


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def tiny() -> CLIPTextEncoder:
    return CLIPTextEncoder(**TINY).eval()


def openai_text_state(width: int, layers: int, embed_dim: int, context_length: int = 77,
                      vocab: int = 300) -> dict:
    """A full CLIP state dict in OpenAI's layout (text tower + a few visual/meta entries)."""
    g = torch.Generator().manual_seed(1)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    sd = {
        "logit_scale": r(()), "visual.proj": r(8, embed_dim), "visual.class_embedding": r(8),
        "token_embedding.weight": r(vocab, width), "positional_embedding": r(context_length, width),
        "ln_final.weight": r(width), "ln_final.bias": r(width), "text_projection": r(width, embed_dim),
    }
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        sd.update({
            p + "attn.in_proj_weight": r(3 * width, width), p + "attn.in_proj_bias": r(3 * width),
            p + "attn.out_proj.weight": r(width, width), p + "attn.out_proj.bias": r(width),
            p + "ln_1.weight": r(width), p + "ln_1.bias": r(width),
            p + "mlp.c_fc.weight": r(4 * width, width), p + "mlp.c_fc.bias": r(4 * width),
            p + "mlp.c_proj.weight": r(width, 4 * width), p + "mlp.c_proj.bias": r(width),
            p + "ln_2.weight": r(width), p + "ln_2.bias": r(width),
        })
    return sd


# ---------------------------------------------------------------------------- text encoder
def test_forward_shapes_and_eot_forms(tiny):
    prompts = torch.randn(3, 77, 64)
    out = tiny(prompts, 11)
    assert out.shape == (3, 32)
    same = tiny(prompts, torch.tensor([11, 11, 11]))
    torch.testing.assert_close(out, same, rtol=0, atol=0)
    assert tiny(prompts[:, :20], 11).shape == (3, 32)  # shorter sequences slice mask + positions


def test_causal_mask_really_masks(tiny):
    prompts = torch.randn(2, 77, 64)
    eot = 11
    ref = tiny(prompts, eot)
    after = prompts.clone()
    after[:, eot + 1:] = torch.randn(2, 77 - eot - 1, 64)
    torch.testing.assert_close(tiny(after, eot), ref, rtol=0, atol=0)
    before = prompts.clone()
    before[:, eot - 3] += torch.randn(2, 64)  # not a constant: LayerNorm would remove it
    assert (tiny(before, eot) - ref).abs().amax(dim=1).min() > 1e-4  # each sample changes
    at_eot = prompts.clone()
    at_eot[:, eot] += torch.randn(2, 64)
    assert not torch.allclose(tiny(at_eot, eot), ref)


def test_eot_pick_per_sample(tiny):
    prompts = torch.randn(3, 77, 64)
    eot = torch.tensor([4, 30, 76])
    out = tiny(prompts, eot)
    for i, e in enumerate(eot.tolist()):
        torch.testing.assert_close(out[i], tiny(prompts[i:i + 1], e)[0])
    # manual: the same pipeline with every token kept, then the EOT rows projected
    x = prompts + tiny.positional_embedding
    x = tiny.ln_final(tiny.transformer(x, attn_mask=tiny.attn_mask))
    torch.testing.assert_close(out, x[torch.arange(3), eot] @ tiny.text_projection)


def test_grad_checkpointing_same_output_and_grads(tiny):
    prompts = torch.randn(2, 77, 64, requires_grad=True)
    out = tiny(prompts, 9)
    (grad,) = torch.autograd.grad(out.square().sum(), prompts)
    tiny.set_grad_checkpointing(True)
    out_ckpt = tiny(prompts, 9)
    (grad_ckpt,) = torch.autograd.grad(out_ckpt.square().sum(), prompts)
    torch.testing.assert_close(out_ckpt, out)
    torch.testing.assert_close(grad_ckpt, grad)
    assert grad[:, 10:].abs().sum() == 0  # nothing after the EOT position reaches the output


def test_invalid_inputs(tiny):
    with pytest.raises(ValueError, match=r"\(B, L, 64\)"):
        tiny(torch.randn(2, 77, 63), 3)
    with pytest.raises(ValueError, match="context_length=77"):
        tiny(torch.randn(1, 78, 64), 3)
    with pytest.raises(ValueError, match="eot_index"):
        tiny(torch.randn(2, 77, 64), 77)
    with pytest.raises(ValueError, match="eot_index"):
        tiny(torch.randn(2, 77, 64), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="divisible"):
        CLIPTextEncoder(width=64, heads=3)


def test_parameter_names_are_openai_names(tiny):
    names = set(tiny.state_dict())
    assert {"positional_embedding", "text_projection", "ln_final.weight", "ln_final.bias"} <= names
    block = {k.split("resblocks.0.", 1)[1] for k in names if k.startswith("transformer.resblocks.0.")}
    assert block == {
        "ln_1.weight", "ln_1.bias", "attn.in_proj_weight", "attn.in_proj_bias",
        "attn.out_proj.weight", "attn.out_proj.bias", "ln_2.weight", "ln_2.bias",
        "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias",
    }
    assert not any("token_embedding" in k or "attn_mask" in k for k in names)
    assert isinstance(tiny.transformer.resblocks[0].mlp.gelu, QuickGELU)


def test_load_openai_layout_round_trips(tmp_path):
    full = openai_text_state(width=64, layers=2, embed_dim=32)
    torch.save(full, tmp_path / "clip.pt")
    full = torch.load(tmp_path / "clip.pt", weights_only=True)
    text, table = text_state_dict(full)
    assert table is full["token_embedding.weight"]
    enc = CLIPTextEncoder(**TINY)
    enc.load_text_state_dict({**text, "token_embedding.weight": table})  # table is ignored
    own = enc.state_dict()
    assert set(own) == set(text)
    for k, v in text.items():
        assert torch.equal(own[k], v), k


def test_load_errors_are_clear():
    text, _ = text_state_dict(openai_text_state(width=64, layers=2, embed_dim=32))
    enc = CLIPTextEncoder(**TINY)
    bad = dict(text, text_projection=torch.zeros(64, 16))
    with pytest.raises(ValueError, match=r"text_projection has shape \(64, 16\).*\(64, 32\)"):
        enc.load_text_state_dict(bad, source="x.pt")
    missing = {k: v for k, v in text.items() if not k.startswith("transformer.resblocks.1.")}
    with pytest.raises(ValueError, match="missing.*resblocks.1"):
        enc.load_text_state_dict(missing)
    with pytest.raises(ValueError, match="unexpected.*logit_scale"):
        enc.load_text_state_dict(dict(text, logit_scale=torch.zeros(())))


def test_equals_open_clip_text_transformer_float64():
    """Our encoder on looked-up embeddings == open_clip's TextTransformer on the token ids."""
    ref = TextTransformer(context_length=77, vocab_size=500, width=64, heads=2, layers=2,
                          output_dim=32, act_layer=QuickGELU).double().eval()
    ours = CLIPTextEncoder(**TINY).double().eval()
    ours.load_text_state_dict(ref.state_dict())
    ids = torch.randint(1, 400, (4, 77))
    eot = torch.tensor([5, 11, 40, 76])
    for i, e in enumerate(eot.tolist()):  # EOT = largest id, as open_clip's argmax pooling expects
        ids[i, e] = 499
        ids[i, e + 1:] = 0
    with torch.no_grad():
        expected = ref(ids)
        got = ours(ref.token_embedding(ids), eot)
    assert expected.dtype == got.dtype == torch.float64
    assert torch.equal(got, expected)  # same modules, same operations: bit-identical


def test_full_size_parameter_counts_on_meta():
    with torch.device("meta"):
        vit = CLIPTextEncoder()  # ViT-B/16 text tower
        rn50 = CLIPTextEncoder(embed_dim=1024)
        prompts = PromptLearner(625, width=512)
    assert n_params(vit) == 38_131_200
    assert n_params(vit.transformer) == 37_828_608
    assert n_params(rn50) == 38_131_200 - 512 * 512 + 512 * 1024
    assert n_params(prompts) == 1_280_000
    assert prompts.token_prefix.shape == (1, 5, 512) and prompts.token_suffix.shape == (1, 68, 512)


def test_text_macs():
    expected_block = 4 * 77 * 512**2 + 2 * 77 * 512 * 2048 + 2 * 77**2 * 512
    assert text_macs(77, 512, 12) == 12 * expected_block
    assert round(text_macs(77, 512, 12) / 1e9, 2) == 2.98


# ---------------------------------------------------------------------------- prompt learner
@pytest.fixture(scope="module")
def table() -> torch.Tensor:
    return torch.randn(CLIP_VOCAB_SIZE, 8, generator=torch.Generator().manual_seed(3))


def test_prompt_layout_with_open_clip_tokenizer(table):
    tokens = open_clip.tokenize([PERSON_TEMPLATE])[0]
    sot, eot = 49406, 49407
    assert tokens[0] == sot and tokens[11] == eot and int(tokens.argmax()) == 11
    assert (tokens[5:9] == tokens[5]).all() and (tokens[12:] == 0).all()
    pl = PromptLearner(10, token_embedding=table)
    assert pl.eot_index == 11 and pl.ctx_start == 5
    torch.testing.assert_close(pl.token_prefix[0], table[tokens[:5]], rtol=0, atol=0)
    torch.testing.assert_close(pl.token_suffix[0], table[tokens[9:]], rtol=0, atol=0)
    labels = torch.tensor([7, 2])
    prompts = pl(labels)
    assert prompts.shape == (2, 77, 8)
    torch.testing.assert_close(prompts[:, 5:9], pl.cls_ctx[labels], rtol=0, atol=0)
    keep = torch.cat([torch.arange(5), torch.arange(9, 77)])
    torch.testing.assert_close(prompts[:, keep], table[tokens[keep]].expand(2, -1, -1),
                               rtol=0, atol=0)


def test_vehicle_template_and_nn_embedding(table):
    emb = torch.nn.Embedding.from_pretrained(table)
    pl = PromptLearner(3, token_embedding=emb, template=VEHICLE_TEMPLATE)
    tokens = open_clip.tokenize([VEHICLE_TEMPLATE])[0]
    assert pl.eot_index == int(tokens.argmax()) == 11
    torch.testing.assert_close(pl.token_suffix[0], table[tokens[9:]], rtol=0, atol=0)
    other = PromptLearner(3, token_embedding=table, template="a X X person", n_ctx=2)
    assert (other.ctx_start, other.eot_index) == (2, 5)  # SOT a x x person EOT
    assert other(torch.tensor([1])).shape == (1, 77, 8)


def test_prompts_per_label_rows_distinct(table):
    pl = PromptLearner(4, token_embedding=table)
    assert pl.cls_ctx.std().item() == pytest.approx(0.02, rel=0.2)
    out = pl(torch.tensor([0, 1, 2, 1]))
    torch.testing.assert_close(out[1], out[3], rtol=0, atol=0)
    for i in range(3):
        for j in range(i + 1, 3):
            assert not torch.equal(out[i, 5:9], out[j, 5:9])
            torch.testing.assert_close(out[i, :5], out[j, :5], rtol=0, atol=0)
            torch.testing.assert_close(out[i, 9:], out[j, 9:], rtol=0, atol=0)
    out.sum().backward()
    assert pl.cls_ctx.grad[1].abs().sum() > 0 and pl.cls_ctx.grad[3].abs().sum() == 0
    assert pl.token_prefix.grad is None


def test_prompt_buffers_persist_and_reload(table):
    pl = PromptLearner(4, token_embedding=table)
    assert set(pl.state_dict()) == {"cls_ctx", "token_prefix", "token_suffix"}
    fresh = PromptLearner(4, width=8)  # random table, then CLIP's table loaded afterwards
    assert not torch.equal(fresh.token_prefix, pl.token_prefix)
    fresh.load_token_embedding(table)
    torch.testing.assert_close(fresh.token_prefix, pl.token_prefix, rtol=0, atol=0)
    torch.testing.assert_close(fresh.token_suffix, pl.token_suffix, rtol=0, atol=0)
    again = PromptLearner(4, width=8)
    again.load_state_dict(pl.state_dict())  # CLIP-ReID checkpoint entries, 1:1
    torch.testing.assert_close(again(torch.tensor([2])), pl(torch.tensor([2])), rtol=0, atol=0)


def test_prompt_learner_errors(table):
    with pytest.raises(ValueError, match="width"):
        PromptLearner(4)
    with pytest.raises(ValueError, match="exactly one run of 4"):
        PromptLearner(4, token_embedding=table, template="A photo of a X X person.")
    with pytest.raises(ValueError, match="exactly one run of 2"):
        PromptLearner(4, token_embedding=table, template="X a X person.", n_ctx=2)
    with pytest.raises(ValueError, match="rows"):
        PromptLearner(4, token_embedding=torch.zeros(100, 8))
    pl = PromptLearner(4, token_embedding=table)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        pl(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="1-D integer"):
        pl(torch.tensor([0.0]))


def test_prompt_learner_feeds_text_encoder(table):
    pl = PromptLearner(5, token_embedding=table)
    enc = CLIPTextEncoder(embed_dim=16, width=8, heads=2, layers=1)
    feats = enc(pl(torch.tensor([0, 3, 3])), pl.eot_index)
    assert feats.shape == (3, 16)
    torch.testing.assert_close(feats[1], feats[2])
    feats.sum().backward()
    assert pl.cls_ctx.grad[3].abs().sum() > 0
