"""bench_diffae_quality's ``x0_follow`` score: whose age the one-step x̂0 has, z's face or x_t's face."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from bench_helpers import load_bench
from pada import diffusion as D


def _bench():
    return load_bench("bench_diffae_quality")


def _age_critic(x):  # a stand-in estimator: brighter image = older
    return SimpleNamespace(age=40 + 30 * x.mean((1, 2, 3)))


def test_x0_follow_reads_the_age_of_the_face_z_belongs_to():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8, generator=g) * 1.6 - 0.8
    x = x + torch.linspace(-0.15, 0.15, 6).view(6, 1, 1, 1)  # distinct "ages"
    schedule = D.linear_schedule(1000)

    def eps(x_t, t, z):  # a network that draws exactly the face its code z holds
        a, s = D.alpha_sigma(schedule, t, x_t)
        return (x_t - a * z.view_as(x_t)) / s

    follows = SimpleNamespace(schedule=schedule, eps=eps)
    age_x = _age_critic(x).age
    out = _bench().x0_follow(follows, x, x.flatten(1), age_x, _age_critic)
    assert sorted(out) == ["300", "500", "700", "900"]
    for scores in out.values():
        assert scores["age_corr_to_z_face"] > 0.99
        assert scores["age_corr_to_z_face"] > scores["age_corr_to_x_t_face"] + 0.5

    # a network that ignores z and denoises toward x_t's own face: the score says so
    ignores = SimpleNamespace(schedule=schedule, eps=lambda x_t, t, z: eps(x_t, t, x.flatten(1)))
    out = _bench().x0_follow(ignores, x, x.flatten(1), age_x, _age_critic)
    for scores in out.values():
        assert scores["age_corr_to_x_t_face"] > 0.99 and scores["age_corr_to_z_face"] < 0.9


def test_coarse_ceiling_scores_what_the_coarse_image_keeps_of_the_face():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 16, 16, generator=g) * 2 - 1

    def sface(img):  # a stand-in identity embedding: the centred 8x8 image
        small = torch.nn.functional.adaptive_avg_pool2d(img, 8).flatten(1)
        return small - small.mean(1, keepdim=True)

    def network(coarse_image, size=8):
        return SimpleNamespace(unet=SimpleNamespace(config=SimpleNamespace(coarse_size=size),
                                                    coarse_image=coarse_image))

    exact = network(lambda z: z.view(-1, 3, 8, 8))  # coarse(z) is the downsampled face itself
    z = torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)
    out = _bench().coarse_ceiling(exact, x, z, sface)
    assert out["coarse_size"] == 8
    assert abs(out["sface_coarse_z"] - out["sface_downsampled_input"]) < 1e-5

    # a coarse path that draws everyone's mean face keeps much less of each person
    mean_face = network(lambda z: z.view(-1, 3, 8, 8).mean(0, keepdim=True).expand(len(z), -1, -1, -1))
    out = _bench().coarse_ceiling(mean_face, x, z, sface)
    assert out["sface_coarse_z"] < out["sface_downsampled_input"] - 0.3

    assert _bench().coarse_ceiling(network(None, size=0), x, z, sface) == {}
