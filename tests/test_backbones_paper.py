"""Paper-scale backbone loading (bench.backbones.paper), offline, with tiny random models.

Every model is tiny and randomly initialised but has the real interface shapes (77 x 768 text
conditioning, 1000 ImageNet classes, ...), is saved in its real on-disk format into tmp_path
and loaded back through the same code the paper-scale run uses. Nothing touches the network.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import gzip  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench.backbones.base import Captioner, Classifier, FidelityExtractor, Generator, ImageEncoder, TextEncoder  # noqa: E402
from bench.backbones.paper import (  # noqa: E402
    ROLE_KEYS,
    VIT_H_14,
    BackboneError,
    ClassifierSpec,
    PaperBackboneConfig,
    TorchvisionClassifier,
    load_paper_backbones,
    load_paper_config,
)
from bench.errors import UserError  # noqa: E402

torch.set_num_threads(1)

RES = 64  # 4-level SD-layout VAE (x8) + UNet (3 downsamples): 64 px images, 8 x 8 latents


def _images(n: int, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------
# Tiny models in their real formats
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def clip_tokenizer():
    """A real CLIPTokenizer built from open_clip's bundled BPE file (first 2000 merges)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe
    from transformers import CLIPTokenizer

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")[1:2001]]
    units = list(bytes_to_unicode().values())
    tokens = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=77)


@pytest.fixture(scope="module")
def sd_dir(tmp_path_factory, clip_tokenizer):
    """A tiny SD 1.5-layout pipeline (4-level UNet/VAE, 768-wide CLIP text encoder) saved by diffusers."""
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=RES // 8, layers_per_block=2, block_out_channels=(8, 8, 8, 8), norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768, attention_head_dim=2,
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 8, 8), layers_per_block=2, latent_channels=4, norm_num_groups=4, sample_size=RES,
    )
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    eos = clip_tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(clip_tokenizer), hidden_size=768, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=eos - 1, eos_token_id=eos, pad_token_id=eos,
    ))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    out = tmp_path_factory.mktemp("sd") / "sd15-tiny"
    pipe.save_pretrained(out)
    return out


# diffusers -> original (LDM) key names for the SD 1.x layout, after diffusers'
# scripts/convert_diffusers_to_original_stable_diffusion.py (attention names updated).
def _unet_layer_map() -> list[tuple[str, str]]:
    m = []
    for i in range(4):
        for j in range(2):
            m.append((f"input_blocks.{3 * i + j + 1}.0.", f"down_blocks.{i}.resnets.{j}."))
            if i < 3:
                m.append((f"input_blocks.{3 * i + j + 1}.1.", f"down_blocks.{i}.attentions.{j}."))
        for j in range(3):
            m.append((f"output_blocks.{3 * i + j}.0.", f"up_blocks.{i}.resnets.{j}."))
            if i > 0:
                m.append((f"output_blocks.{3 * i + j}.1.", f"up_blocks.{i}.attentions.{j}."))
        if i < 3:
            m.append((f"input_blocks.{3 * (i + 1)}.0.op.", f"down_blocks.{i}.downsamplers.0.conv."))
            m.append((f"output_blocks.{3 * i + 2}.{1 if i == 0 else 2}.", f"up_blocks.{i}.upsamplers.0."))
    m.append(("middle_block.1.", "mid_block.attentions.0."))
    m += [(f"middle_block.{2 * j}.", f"mid_block.resnets.{j}.") for j in range(2)]
    return m


def _unet_to_ldm(sd: dict) -> dict:
    top = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
           "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    res = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection")]
    out = {}
    for key, value in sd.items():
        base, _, leaf = key.rpartition(".")
        new = top.get(base, base) + "." + leaf
        if "resnets" in new:
            for hf, ldm in res:
                new = new.replace(hf, ldm)
        for ldm, hf in _unet_layer_map():
            new = new.replace(hf, ldm)
        out["model.diffusion_model." + new] = value
    return out


def _vae_to_ldm(sd: dict) -> dict:
    m = [("nin_shortcut", "conv_shortcut"), ("norm_out", "conv_norm_out"), ("mid.attn_1.", "mid_block.attentions.0.")]
    for i in range(4):
        m += [(f"encoder.down.{i}.block.{j}.", f"encoder.down_blocks.{i}.resnets.{j}.") for j in range(2)]
        if i < 3:
            m += [(f"down.{i}.downsample.", f"down_blocks.{i}.downsamplers.0."),
                  (f"up.{3 - i}.upsample.", f"up_blocks.{i}.upsamplers.0.")]
        m += [(f"decoder.up.{3 - i}.block.{j}.", f"decoder.up_blocks.{i}.resnets.{j}.") for j in range(3)]
    m += [(f"mid.block_{i + 1}.", f"mid_block.resnets.{i}.") for i in range(2)]
    attn = [("norm.", "group_norm."), ("q.", "to_q."), ("k.", "to_k."), ("v.", "to_v."), ("proj_out.", "to_out.0.")]
    out = {}
    for key, value in sd.items():
        new = key
        for ldm, hf in m:
            new = new.replace(hf, ldm)
        if "attentions" in key:
            for ldm, hf in attn:
                new = new.replace(hf, ldm)
            if new.endswith(".weight") and value.ndim == 2:  # linear -> 1x1 conv
                value = value[:, :, None, None]
        out["first_stage_model." + new] = value
    return out


@pytest.fixture(scope="module")
def sd_single_file(sd_dir, tmp_path_factory):
    """The tiny SD as one original-layout .safetensors checkpoint + a config-only diffusers folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    unet = UNet2DConditionModel.from_pretrained(sd_dir, subfolder="unet", local_files_only=True)
    vae = AutoencoderKL.from_pretrained(sd_dir, subfolder="vae", local_files_only=True)
    text = CLIPTextModel.from_pretrained(sd_dir, subfolder="text_encoder", local_files_only=True)
    text_sd = {"cond_stage_model.transformer." + (k if k.startswith("text_model.") else "text_model." + k): v
               for k, v in text.state_dict().items()}
    state = {**_unet_to_ldm(unet.state_dict()), **_vae_to_ldm(vae.state_dict()), **text_sd}
    root = tmp_path_factory.mktemp("sd_single")
    ckpt = root / "v1-5-tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(ckpt))
    config = root / "sd15-config"  # configs + tokenizer only: the weights must come from the checkpoint
    shutil.copytree(sd_dir, config, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return ckpt, config


@pytest.fixture(scope="module")
def sd_backbones(sd_dir):
    cfg = PaperBackboneConfig(sd=str(sd_dir), sd_resolution=RES)
    return load_paper_backbones(cfg, roles=("text_encoder", "generator"))


# ---------------------------------------------------------------------------------------------
# Stable Diffusion 1.5 + its CLIP text encoder
# ---------------------------------------------------------------------------------------------


def test_sd_folder_text_encoder(sd_backbones, sd_dir):
    from diffusers import StableDiffusionPipeline

    enc = sd_backbones.text_encoder
    assert isinstance(enc, TextEncoder) and (enc.n_tokens, enc.width) == (77, 768)
    prompts = ["a photo of a dog", "", "very long prompt " * 60]
    tokens = enc.encode_tokens(prompts)
    assert tokens.shape == (3, 77, 768) and tokens.dtype == torch.float32
    pooled = enc.encode_pooled(prompts)
    assert pooled.shape == (3, 768)
    torch.testing.assert_close(pooled.norm(dim=-1), torch.ones(3))
    # Same conditioning as diffusers' own SD prompt encoding (padding to 77, truncation).
    pipe = StableDiffusionPipeline.from_pretrained(sd_dir, local_files_only=True, safety_checker=None)
    ref, _ = pipe.encode_prompt(prompts, torch.device("cpu"), 1, False)
    torch.testing.assert_close(tokens, ref)
    assert sd_backbones.ids["text_encoder"].endswith("::text_encoder")
    assert sd_backbones.ids["generator"] == str(sd_dir.resolve())
    assert sd_backbones.captioner is None and sd_backbones.classifier is None


def test_sd_folder_generator(sd_backbones):
    from diffusers import PNDMScheduler

    gen = sd_backbones.generator
    assert isinstance(gen, Generator) and gen.resolution == RES
    assert isinstance(gen.txt2img_pipe.scheduler, PNDMScheduler)  # PLMS, as in BrainVis stage 1
    torch.testing.assert_close(gen.uncond_embeds, sd_backbones.text_encoder.encode_tokens([""]))
    emb = sd_backbones.text_encoder.encode_tokens(["a dog", "a cat"])
    a = gen.txt2img(emb, steps=2, guidance=1.0, seed=3)
    assert a.dtype == np.uint8 and a.shape == (2, RES, RES, 3)
    np.testing.assert_array_equal(a, gen.txt2img(emb, steps=2, guidance=1.0, seed=3))
    assert gen.txt2img(emb[:1], steps=2, guidance=7.5, seed=0).shape == (1, RES, RES, 3)  # uses the uncond negative
    b = gen.img2img(_images(2), emb, strength=0.5, steps=2, guidance=7.5, seed=1)
    assert b.dtype == np.uint8 and b.shape == (2, RES, RES, 3)


def test_sd_single_file(sd_single_file, sd_backbones):
    ckpt, config = sd_single_file
    cfg = PaperBackboneConfig(sd=str(ckpt), sd_config=str(config), sd_resolution=RES)
    bb = load_paper_backbones(cfg, roles=("generator", "text_encoder"))
    assert bb.ids["generator"] == str(ckpt.resolve())
    emb = bb.text_encoder.encode_tokens(["a dog"])
    torch.testing.assert_close(emb, sd_backbones.text_encoder.encode_tokens(["a dog"]))
    # Same weights as the diffusers folder, bit for bit ...
    for part in ("unet", "vae"):
        mine, ref = (getattr(g.txt2img_pipe, part).state_dict() for g in (bb.generator, sd_backbones.generator))
        assert mine.keys() == ref.keys() and all(torch.equal(mine[k], ref[k]) for k in ref), part
    # ... so the same images for the same seed, to the uint8 rounding: the two loads may lay the tensors out
    # differently, and a kernel's last bit can tip a pixel by one level (seen on one machine in 12,288 values)
    a = bb.generator.txt2img(emb, steps=2, guidance=1.0, seed=5).astype(int)
    b = sd_backbones.generator.txt2img(emb, steps=2, guidance=1.0, seed=5).astype(int)
    assert np.abs(a - b).max() <= 1 and np.mean(a != b) < 1e-3


def test_sd_single_file_needs_local_config(sd_single_file):
    ckpt, _ = sd_single_file
    for role in ("generator", "text_encoder"):
        with pytest.raises(BackboneError, match="sd_config") as info:
            load_paper_backbones(PaperBackboneConfig(sd=str(ckpt)), roles=(role,))
        assert role in str(info.value) and "How to provide" in str(info.value)


def test_text_encoder_from_own_folder(sd_dir, tmp_path):
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = tmp_path / "clip-vit-large-patch14"
    CLIPTextModel.from_pretrained(sd_dir, subfolder="text_encoder", local_files_only=True).save_pretrained(folder)
    CLIPTokenizer.from_pretrained(sd_dir, subfolder="tokenizer", local_files_only=True).save_pretrained(folder)
    bb = load_paper_backbones(PaperBackboneConfig(sd=None, clip_text=str(folder)), roles=("text_encoder",))
    assert bb.ids["text_encoder"] == str(folder.resolve())
    assert bb.text_encoder.encode_tokens(["x"]).shape == (1, 77, 768)


# ---------------------------------------------------------------------------------------------
# BLIP-2
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blip2_dir(tmp_path_factory):
    """A tiny BLIP-2 (OPT decoder) with a real Blip2Processor (byte-level BPE tokenizer + <image>)."""
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2Processor, BlipImageProcessor, GPT2Tokenizer

    vocab = {t: i for i, t in enumerate(["<pad>", "</s>", "<unk>"] + list(bytes_to_unicode().values()))}
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=[], unk_token="<unk>", bos_token="</s>", eos_token="</s>",
                              pad_token="<pad>")
    processor = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 224, "width": 224}),
                               tokenizer=tokenizer, num_query_tokens=4)  # adds the <image> token
    torch.manual_seed(0)
    config = Blip2Config(
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=224, patch_size=32),
        qformer_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                            encoder_hidden_size=32, vocab_size=99),
        text_config=dict(model_type="opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=37,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=64,
                         word_embed_proj_dim=32, pad_token_id=0, bos_token_id=1, eos_token_id=1),
        num_query_tokens=4, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    out = tmp_path_factory.mktemp("blip2") / "blip2-opt-tiny"
    Blip2ForConditionalGeneration(config).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def test_blip2_captioner(blip2_dir):
    cfg = PaperBackboneConfig(blip2=str(blip2_dir), blip2_max_new_tokens=3, batch_size=2)
    bb = load_paper_backbones(cfg, roles=("captioner",))
    assert isinstance(bb.captioner, Captioner) and bb.ids["captioner"] == str(blip2_dir.resolve())
    caps = bb.captioner.caption(_images(3))  # two batches
    assert len(caps) == 3 and all(isinstance(c, str) and c == c.strip() for c in caps)
    assert all(len(c.encode("utf-8", "replace")) <= 3 * 4 for c in caps)  # <= 3 new byte-level tokens


# ---------------------------------------------------------------------------------------------
# torchvision classifier (ViT-H/14 protocol)
# ---------------------------------------------------------------------------------------------


def _tiny_vit(image_size: int = 32, hidden_dim: int = 32):
    from torchvision.models.vision_transformer import VisionTransformer

    return VisionTransformer(image_size=image_size, patch_size=16, num_layers=1, num_heads=2, hidden_dim=hidden_dim,
                             mlp_dim=64, num_classes=1000)


TINY_VIT = ClassifierSpec("tiny_vit", _tiny_vit, crop_size=32, resize_size=36)


@pytest.fixture(scope="module")
def vit_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("vit") / "tiny_vit.pth"
    torch.save(_tiny_vit().state_dict(), path)
    return path


def test_classifier_probs(vit_weights):
    cfg = PaperBackboneConfig(vit_h14=str(vit_weights), batch_size=2)
    bb = load_paper_backbones(cfg, roles=("classifier",), classifier_spec=TINY_VIT)
    clf = bb.classifier
    assert isinstance(clf, Classifier) and clf.n_classes == 1000 and bb.ids["classifier"] == str(vit_weights.resolve())
    images = _images(3)
    p = clf.probs(images)
    assert p.shape == (3, 1000) and p.dtype == torch.float32
    torch.testing.assert_close(p.sum(dim=1), torch.ones(3))
    ref = _tiny_vit()
    ref.load_state_dict(torch.load(vit_weights, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(p, torch.softmax(ref.eval()(clf.preprocess(images)), dim=-1))


def test_vit_h14_preprocessing_matches_torchvision():
    """The explicit preprocessing equals ViT_H_14_Weights.DEFAULT.transforms() (no download needed)."""
    from torchvision.models import ViT_H_14_Weights

    tf = ViT_H_14_Weights.DEFAULT.transforms()
    assert (VIT_H_14.crop_size, VIT_H_14.resize_size) == (tf.crop_size[0], tf.resize_size[0]) == (518, 518)
    assert VIT_H_14.interpolation == tf.interpolation.value
    assert list(VIT_H_14.mean) == list(tf.mean) and list(VIT_H_14.std) == list(tf.std)
    clf = TorchvisionClassifier(_tiny_vit(), VIT_H_14)
    images = _images(2, h=300, w=400)
    ours = clf.preprocess(images)
    ref = torch.stack([tf(torch.from_numpy(im).permute(2, 0, 1)) for im in images])
    assert ours.shape == (2, 3, 518, 518)
    torch.testing.assert_close(ours, ref)


def test_classifier_bad_weights(vit_weights, tmp_path):
    import argparse

    wrong = ClassifierSpec("tiny_vit_wide", lambda: _tiny_vit(hidden_dim=64), crop_size=32, resize_size=32)
    with pytest.raises(BackboneError, match="classifier") as info:
        load_paper_backbones(PaperBackboneConfig(vit_h14=str(vit_weights)), roles=("classifier",),
                             classifier_spec=wrong)
    assert "size mismatch" in str(info.value) and "How to provide" in str(info.value)
    unsafe = tmp_path / "pickled.pth"
    torch.save({"obj": argparse.Namespace(a=1)}, unsafe)  # not loadable with weights_only=True
    with pytest.raises(BackboneError, match="classifier"):
        load_paper_backbones(PaperBackboneConfig(vit_h14=str(unsafe)), roles=("classifier",), classifier_spec=TINY_VIT)


# ---------------------------------------------------------------------------------------------
# open_clip image encoder (CS)
# ---------------------------------------------------------------------------------------------

TINY_CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_open_clip(tmp_path_factory):
    import open_clip

    root = tmp_path_factory.mktemp("open_clip")
    (root / "configs").mkdir()
    (root / "configs" / "bvb-tiny-ViT.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(root / "configs")
    torch.manual_seed(0)
    model = open_clip.create_model("bvb-tiny-ViT", pretrained=None, force_quick_gelu=True)
    ckpt = root / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), ckpt)
    return ckpt, model


def test_open_clip_image_encoder(tiny_open_clip):
    ckpt, model = tiny_open_clip
    cfg = PaperBackboneConfig(clip_cs=str(ckpt), clip_cs_model="bvb-tiny-ViT", batch_size=2)
    bb = load_paper_backbones(cfg, roles=("image_encoder",))
    enc = bb.image_encoder
    assert isinstance(enc, ImageEncoder) and bb.ids["image_encoder"] == str(ckpt.resolve())
    emb = enc.encode(_images(3))
    assert emb.shape == (3, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    x = torch.stack([enc.preprocess(Image.fromarray(im)) for im in _images(3)])
    with torch.no_grad():
        torch.testing.assert_close(emb, torch.nn.functional.normalize(model.eval().encode_image(x), dim=-1))


def test_open_clip_local_dir(tiny_open_clip, tmp_path):
    ckpt, _ = tiny_open_clip
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {**TINY_CLIP_CFG, "quick_gelu": True}}))
    shutil.copy(ckpt, tmp_path / "open_clip_pytorch_model.bin")
    bb = load_paper_backbones(PaperBackboneConfig(clip_cs=str(tmp_path)), roles=("image_encoder",))
    assert bb.image_encoder.encode(_images(1)).shape == (1, 16)


# ---------------------------------------------------------------------------------------------
# Inception (torch-fidelity)
# ---------------------------------------------------------------------------------------------


def test_inception_kwargs(tmp_path):
    import torch_fidelity.defaults

    weights = tmp_path / "weights-inception-2015-12-05-6726825d.pth"
    weights.write_bytes(b"not real weights")
    bb = load_paper_backbones(PaperBackboneConfig(inception=str(weights)), roles=("fidelity",))
    assert isinstance(bb.fidelity, FidelityExtractor) and bb.fidelity.name == "inception-v3-compat"
    kwargs = bb.fidelity.fidelity_kwargs()
    assert kwargs == {"feature_extractor": "inception-v3-compat", "feature_extractor_weights_path": str(weights.resolve())}
    assert set(kwargs) <= set(torch_fidelity.defaults.DEFAULTS)  # names calculate_metrics understands
    with pytest.raises(BackboneError, match="fidelity"):
        load_paper_backbones(PaperBackboneConfig(inception=str(tmp_path)), roles=("fidelity",))  # a folder


# ---------------------------------------------------------------------------------------------
# Errors: missing weights, hub ids offline
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", sorted(ROLE_KEYS))
def test_missing_weights(role, tmp_path):
    key = ROLE_KEYS[role]
    missing = str(tmp_path / "nope" / "weights.safetensors")
    with pytest.raises(BackboneError) as info:
        load_paper_backbones(PaperBackboneConfig(**{key: missing}), roles=(role,))
    msg = str(info.value)
    assert isinstance(info.value, UserError)
    assert role in msg and f"'{key}'" in msg and "How to provide" in msg and "Expected" in msg and missing in msg


@pytest.mark.parametrize("role", ["classifier", "fidelity"])
def test_unset_weights(role):
    with pytest.raises(BackboneError, match="no source configured"):
        load_paper_backbones(PaperBackboneConfig(), roles=(role,))


def test_all_problems_in_one_error(tmp_path):
    cfg = PaperBackboneConfig(sd=str(tmp_path / "no-sd"), blip2=str(tmp_path / "no-blip2"))
    with pytest.raises(BackboneError) as info:
        load_paper_backbones(cfg)
    msg = str(info.value)
    for role in ("generator", "text_encoder", "captioner", "classifier", "fidelity"):
        assert f"{role} backbone" in msg
    with pytest.raises(BackboneError, match="unknown backbone roles"):
        load_paper_backbones(cfg, roles=("generator", "vae"))


@pytest.fixture
def no_network(monkeypatch):
    """Record (and refuse) every attempt to open a connection or resolve a host."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize("role", ["generator", "text_encoder", "captioner", "image_encoder"])
def test_hub_id_offline(role, no_network):
    hub_id = "brainvis-bench-test/not-a-real-model"
    key = "sd" if role == "generator" else ROLE_KEYS[role]
    start = time.perf_counter()
    with pytest.raises(BackboneError) as info:
        load_paper_backbones(PaperBackboneConfig(**{key: hub_id}), roles=(role,))
    assert time.perf_counter() - start < 10
    msg = str(info.value)
    assert role in msg and hub_id in msg and "HF_HUB_OFFLINE=1" in msg and "How to provide" in msg
    assert "\n" not in msg  # one line, no library traceback
    assert no_network == []


# ---------------------------------------------------------------------------------------------
# TOML configuration
# ---------------------------------------------------------------------------------------------


def test_load_paper_config(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "vit_h_14_swag-80465313.pth").write_bytes(b"x")
    (tmp_path / "models" / "sd15").mkdir()
    path = tmp_path / "paper_backbones.toml"
    path.write_text(
        'sd = "models/sd15"\n'
        'clip_text = "openai/clip-vit-large-patch14"\n'
        'blip2 = ""\n'
        'vit_h14 = "models/vit_h_14_swag-80465313.pth"\n'
        'inception = "/abs/weights-inception.pth"\n'
        'sd_resolution = 256\n'
        'clip_cs_quick_gelu = false\n'
        'device = "cpu"\n'
        'dtype = "bfloat16"\n'
    )
    cfg = load_paper_config(path)
    assert cfg == PaperBackboneConfig(
        sd=str((tmp_path / "models" / "sd15").resolve()), clip_text="openai/clip-vit-large-patch14", blip2=None,
        vit_h14=str((tmp_path / "models" / "vit_h_14_swag-80465313.pth").resolve()),
        inception="/abs/weights-inception.pth", sd_resolution=256, clip_cs_quick_gelu=False, dtype="bfloat16",
    )
    assert cfg.torch_dtype == torch.bfloat16 and cfg.clip_cs == PaperBackboneConfig().clip_cs
    (tmp_path / "empty.toml").write_text("")
    assert load_paper_config(tmp_path / "empty.toml") == PaperBackboneConfig()


@pytest.mark.parametrize("text, match", [
    ('sdd = "x"\n', "unknown keys"),
    ('sd_resolution = "512"\n', "must be of type int"),
    ('dtype = "float64"\n', "dtype"),
    ("sd = [\n", "TOML"),
])
def test_load_paper_config_errors(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(BackboneError, match=match):
        load_paper_config(path)
    with pytest.raises(BackboneError, match="not found"):
        load_paper_config(tmp_path / "missing.toml")


def test_docstring_example_parses(tmp_path):
    import bench.backbones.paper as paper

    doc = paper.__doc__
    example = doc[doc.index("::\n\n") + 4:].split('"""')[0]
    path = tmp_path / "paper_backbones.toml"
    path.write_text("\n".join(line[4:] for line in example.splitlines()))
    cfg = load_paper_config(path)
    assert (cfg.device, cfg.torch_dtype, cfg.sd) == ("cuda", torch.float16, "models/stable-diffusion-v1-5")
