"""Our TMD, SSP and CLIP backbone reproduce the authors' modules.

The reference vectors in ``tests/data/parity`` (see its README.md) were computed by running the
authors' own TF-CLIP modules (AsuradaYuci/TF-CLIP) in float64 on random float16-rounded
parameters. Every file is loaded with ``weights_only=True``, our modules run in float64,
parameters are loaded through :mod:`tfclip_torchreid.models.key_mapping`, and every stored
output and intermediate is matched to 1e-10.
"""

from __future__ import annotations

import os

import pytest
import torch

from tfclip_torchreid.models.backbone import CLIPVisualBackbone, resize_positional_embedding
from tfclip_torchreid.models.key_mapping import convert_authors_key, convert_authors_state_dict
from tfclip_torchreid.models.ssp import SequenceSpecificPrompt, v2m_logits
from tfclip_torchreid.models.tmd import TemporalMemoryDiffusion

ATOL = 1e-10


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == torch.float64
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def load(parity_dir: str, name: str) -> dict:
    return torch.load(os.path.join(parity_dir, name), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def tmd_ref(parity_dir):
    return load(parity_dir, "tmd.pt")


@pytest.fixture(scope="module")
def ssp_ref(parity_dir):
    return load(parity_dir, "ssp.pt")


@pytest.fixture(scope="module")
def backbone_ref(parity_dir):
    return load(parity_dir, "backbone.pt")


def test_tmd_parity(tmd_ref):
    c = tmd_ref["config"]
    tmd = TemporalMemoryDiffusion(c["d_model"], c["n_head"]).double().eval()
    sd = convert_authors_state_dict(tmd_ref["state_dict"], prefix=c["full_model_key_prefix"])
    tmd.load_state_dict(sd, strict=True)
    captured = {}
    tmd.message_fc.register_forward_hook(lambda m, i, o: captured.__setitem__("msg_fc_out", o))
    x = tmd_ref["input"].transpose(0, 1)  # authors: (L, B*T, d) sequence-first -> batch-first
    out = tmd(x, num_frames=c["T"])
    close(captured["msg_fc_out"], tmd_ref["msg_fc_out"])
    close(tmd.construct_memory(x, c["T"]), tmd_ref["msg_tokens"])
    close(out.tokens.transpose(0, 1), tmd_ref["output"])
    close(out.frame_feature, tmd_ref["frame_feature"])
    close(out.sequence_feature, tmd_ref["sequence_feature"])


def test_tmd_parity_catches_wrong_frame_order(tmd_ref):
    c = tmd_ref["config"]
    tmd = TemporalMemoryDiffusion(c["d_model"], c["n_head"]).double().eval()
    tmd.load_state_dict(convert_authors_state_dict(tmd_ref["state_dict"], prefix="TMD."))
    x = tmd_ref["input"].transpose(0, 1)
    t_major = x.view(c["B"], c["T"], *x.shape[1:]).transpose(0, 1).reshape_as(x)
    out = tmd(t_major, num_frames=c["T"])
    assert (out.sequence_feature - tmd_ref["sequence_feature"]).abs().max() > 1e-3


@pytest.mark.parametrize("shared_memory", [True, False], ids=["memory_YxD", "text_BxYxD"])
def test_ssp_parity(ssp_ref, shared_memory):
    c = ssp_ref["config"]
    ssp = SequenceSpecificPrompt(c["embed_dim"], c["layers"]).double().eval()
    assert ssp.heads == c["heads"]
    ssp.load_state_dict(convert_authors_state_dict(ssp_ref["state_dict"], prefix="SSP."), strict=True)
    captured = {}
    ssp.text_proj.register_forward_hook(lambda m, i, o: captured.__setitem__("text", o))
    for i, layer in enumerate(ssp.decoder):
        layer.register_forward_hook(lambda m, inp, o, i=i: captured.__setitem__(f"dec{i}", o))
    memory = ssp_ref["memory"] if shared_memory else ssp_ref["text"]
    prompt = ssp(memory, ssp_ref["visual"])
    shape = ssp_ref["text"].shape
    close(ssp.project_visual(ssp_ref["visual"]), ssp_ref["visual_after_memory_proj"])
    close(captured["text"].expand(shape), ssp_ref["text_after_text_proj"])
    close(captured["dec0"].expand(shape), ssp_ref["text_after_decoder0"])
    close(captured["dec1"].expand(shape), ssp_ref["text_after_decoder1"])
    close(prompt, ssp_ref["output"])
    updated = ssp_ref["memory"] + prompt  # raw memory residual
    close(updated, ssp_ref["updated_memory"])
    close(v2m_logits(ssp_ref["sequence_feature"], updated, "released"), ssp_ref["logits"])
    if shared_memory:  # the memory is projected once, not once per sample
        assert captured["text"].shape[0] == 1


def test_ssp_parity_distinct_memory_per_sample(ssp_ref):
    ssp = SequenceSpecificPrompt(ssp_ref["config"]["embed_dim"], ssp_ref["config"]["layers"])
    ssp = ssp.double().eval()
    ssp.load_state_dict(convert_authors_state_dict(ssp_ref["state_dict"], prefix="SSP."))
    case = ssp_ref["case_distinct_text"]
    prompt = ssp(case["text"], ssp_ref["visual"])
    close(prompt, case["output"])
    close(case["text"] + prompt, case["updated_memory"])
    close(v2m_logits(ssp_ref["sequence_feature"], case["text"] + prompt), case["logits"])


def test_ssp_unused_parameters_kept_and_frozen(ssp_ref):
    ssp = SequenceSpecificPrompt(128, 2).double()
    ssp.load_state_dict(convert_authors_state_dict(ssp_ref["state_dict"], prefix="SSP."))
    torch.testing.assert_close(ssp.alpha, ssp_ref["state_dict"]["alpha"].double())
    assert not ssp.alpha.requires_grad and not ssp.norm.weight.requires_grad


def _backbone(ref: dict) -> CLIPVisualBackbone:
    c = ref["config"]
    m = CLIPVisualBackbone(
        image_size=(c["input_h"], c["input_w"]), patch_size=c["patch_size"],
        stride=c["stride_size"], width=c["width"], layers=c["layers"], heads=c["heads"],
        output_dim=c["output_dim"],
    ).double().eval()
    sd = convert_authors_state_dict(ref["state_dict"], prefix="image_encoder.")
    m.load_state_dict(sd, strict=True)
    return m


def test_backbone_parity_with_sie(backbone_ref):
    m = _backbone(backbone_ref)
    captured = {"blocks": []}
    m.ln_pre.register_forward_hook(lambda mod, i, o: captured.__setitem__("ln_pre", o))
    m.ln_post.register_forward_hook(lambda mod, i, o: captured.__setitem__("pre_ln_post", i[0]))
    for block in m.transformer.resblocks:
        block.register_forward_hook(lambda mod, i, o: captured["blocks"].append(o))
    tokens, tokens_proj = m(backbone_ref["images"], cls_embed=backbone_ref["cv_embed"])
    close(captured["ln_pre"], backbone_ref["ln_pre_out"])
    close(torch.stack(captured["blocks"]), backbone_ref["block_outputs"])
    close(captured["pre_ln_post"], backbone_ref["pre_ln_post"])
    close(tokens, backbone_ref["tokens"])
    close(tokens_proj, backbone_ref["tokens_proj"])


def test_backbone_parity_without_sie(backbone_ref):
    m = _backbone(backbone_ref)
    tokens, tokens_proj = m(backbone_ref["images"])
    close(tokens, backbone_ref["no_cv"]["tokens"])
    close(tokens_proj, backbone_ref["no_cv"]["tokens_proj"])


def test_positional_embedding_resize(backbone_ref):
    ref = backbone_ref["pos_resize"]
    assert (ref["mode"], ref["align_corners"], ref["antialias"]) == ("bilinear", False, False)
    out = resize_positional_embedding(ref["posemb_in"], (ref["h"], ref["w"]))
    close(out, ref["posemb_out"])


def test_full_model_key_prefixes_map_to_our_modules(tmd_ref, ssp_ref, backbone_ref):
    """The authors' full-model keys (with prefixes) map to the same names as the module keys."""
    for ref, theirs, ours in ((tmd_ref, "TMD.", "temporal."), (ssp_ref, "SSP.", "ssp."),
                              (backbone_ref, "image_encoder.", "backbone.")):
        module_level = convert_authors_state_dict(ref["state_dict"], prefix=theirs)
        full = convert_authors_state_dict({theirs + k: v for k, v in ref["state_dict"].items()})
        assert full.keys() == {ours + k for k in module_level}
    assert convert_authors_key("TMD.resblocks.0.mlp.c_fc.weight") == "temporal.diffusion.mlp.c_fc.weight"
    assert convert_authors_key("module.cv_embed") == "cv_embed"
