"""Holding gender while aging (PadaConfig.hold_gender): the direction, the projection, its defaults and
the training task that fits it; the gender-kept score of the evaluation."""

from __future__ import annotations

import pytest
import torch

from pada.aging.config import PadaConfig
from pada.aging.model import PadaModel
from pada.aging.objective import Frozen
from pada.aging.pipeline import AgingPipeline
from pada.aging.testing import TinyVL
from pada.errors import PadaError
from pada.evaluation.scores import gender_kept
from test_aging_helpers import PairDataset, faces, frozen_set, one_thread, tiny_diffae, tiny_model

TEXT = "woman's face in her eighties"


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    with one_thread():
        yield


def planted(n: int = 40, seed: int = 0):
    """Codes (n, 64) of 'men' and 'women' that differ by a planted direction u, plus noise."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(64, generator=g)
    u = u / u.norm()
    male = torch.arange(n) % 3 == 0  # unequal groups
    z = torch.randn(n, 64, generator=g) * 0.05 + male[:, None].float() * 2.0 * u
    return z, male, u


def test_the_direction_is_the_unit_difference_of_the_mean_man_and_woman():
    model = tiny_model(hold_gender=True)
    z, male, u = planted()
    assert model.modulation.set_held_directions(z, male) == (int(male.sum()), int((~male).sum()))
    rows = model.modulation.held_directions
    assert rows.shape == (1, 64)
    assert float(rows.norm()) == pytest.approx(1.0, abs=1e-5)
    assert float(rows[0] @ u) > 0.99  # recovers the planted direction, pointing from women to men
    # the hold takes the shift's part along it out and leaves the rest
    z_src = torch.randn(1, 64)
    other = torch.randn(3, 64)
    other = other - (other @ rows.T) @ rows  # orthogonal to the direction
    z_age = z_src + other + torch.tensor([[1.0], [-2.0], [0.5]]) * rows
    held = model.modulation.hold(z_src, z_age)
    torch.testing.assert_close(((held - z_src) @ rows.T), torch.zeros(3, 1), atol=1e-5, rtol=0)
    torch.testing.assert_close(held - z_src, other, atol=1e-5, rtol=1e-5)


def test_bad_uses_of_the_direction_are_named():
    plain = tiny_model()
    z, male, _ = planted()
    assert not hasattr(plain.modulation, "held_directions")  # files without it keep loading strictly
    with pytest.raises(ValueError, match="hold_gender=true"):
        plain.modulation.set_held_directions(z, male)
    with pytest.raises(ValueError, match="holds no directions"):
        plain.modulation.hold(z[:1], z[1:3])
    model = tiny_model(hold_gender=True)
    with pytest.raises(ValueError, match="not fitted"):
        model.modulation.hold(z[:1], z[1:3])
    with pytest.raises(ValueError, match="men and of women"):
        model.modulation.set_held_directions(z, torch.zeros(len(z), dtype=torch.bool))
    with pytest.raises(ValueError, match="N labels"):
        model.modulation.set_held_directions(z, male[:-1])


def test_the_direction_travels_with_the_model_file(tmp_path):
    model = tiny_model(hold_gender=True)
    z, male, _ = planted()
    model.modulation.set_held_directions(z, male)
    path = model.save(tmp_path / "m.safetensors")
    back = PadaModel.load(path)
    assert back.cfg.hold_gender is True
    assert torch.equal(back.modulation.held_directions, model.modulation.held_directions)
    assert PadaConfig.from_dict(tiny_model().cfg.to_dict()).hold_gender is False  # the paper's default


def test_pipeline_holds_gender_by_default_and_on_request():
    diffae, vl = tiny_diffae(), TinyVL(dim=32)
    model = tiny_model(init_gain=0.5, hold_gender=True)
    z, male, _ = planted()
    model.modulation.set_held_directions(z, male)
    rows = model.modulation.held_directions
    pipe = AgingPipeline(diffae, vl, model, steps=2)
    x = faces(1)[0]
    z_src = pipe.encode(x)
    e, eta = pipe.pae_draws(text=TEXT, n=3, seed=0)
    free = pipe.modulate(z_src, e, eta, hold_gender=False)
    held = pipe.modulate(z_src, e, eta)  # the model's default: held
    assert float(((free - z_src) @ rows.T).abs().max()) > 1e-3  # the free edit moves along gender
    assert float(((held - z_src) @ rows.T).abs().max()) < 1e-5
    torch.testing.assert_close(held, free - ((free - z_src) @ rows.T) @ rows, atol=1e-5, rtol=1e-5)
    # and every output is rendered from the held edit: age() hands it to the decoder
    r_held = pipe.age(x, text=TEXT, n=2, seed=3, calibrate=False, reconstruct=False)
    r_free = pipe.age(x, text=TEXT, n=2, seed=3, calibrate=False, hold_gender=False)
    assert float(((r_held.z_age - z_src) @ rows.T).abs().max()) < 1e-5
    assert not torch.equal(r_held.images, r_free.images)
    # a model without the direction refuses the request in one line
    plain = AgingPipeline(diffae, vl, tiny_model(init_gain=0.5), steps=2)
    with pytest.raises(PadaError, match="hold gender: .*holds no directions"):
        plain.age(x, text=TEXT, n=1, hold_gender=True)
    with pytest.raises(PadaError, match="hold gender: .*holds no directions"):
        plain.lifespan(x, texts=["a child", TEXT], steps=2, hold_gender=True)
    assert plain.age(x, text=TEXT, n=1).images.shape[0] == 1  # off by default
    # the lifespan's anchors are held too
    life = pipe.lifespan(x, texts=["a child", TEXT], frames_per_segment=1, steps=2)
    free_life = pipe.lifespan(x, texts=["a child", TEXT], frames_per_segment=1, steps=2, hold_gender=False)
    assert not torch.equal(life.images, free_life.images)


def test_training_task_fits_the_direction_from_the_labelled_codes():
    from pada.aging.train import PadaTask, PadaTaskOptions

    fr = Frozen(*frozen_set())
    task = PadaTask(PadaTaskOptions(sample_faces=0, pada={"hold_gender": True}), diffae=fr.diffae, vl=fr.vl,
                    age_critic=fr.age_critic, id_critic=fr.id_critic, dataset=PairDataset(8))
    task.build()
    data = PairDataset(8)
    z = fr.diffae.encode(torch.stack([data[i]["source"] for i in range(8)])).double()
    male = torch.tensor([data[i]["source_gender"] == "male" for i in range(8)])
    d = z[male].mean(0) - z[~male].mean(0)
    torch.testing.assert_close(task.model.modulation.held_directions[0].double(), d / d.norm(),
                               atol=1e-4, rtol=1e-4)


class _FakeGender:
    """'Gender critic' reading the mean red channel: red > 0 -> male (index 1)."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        male = (images[:, 0].mean((1, 2)) > 0).float()
        return torch.stack([1 - male, male], 1)


def test_gender_kept_compares_each_output_with_its_input():
    src = torch.full((1, 3, 8, 8), 0.5)  # read as male
    outs = torch.stack([torch.full((3, 8, 8), v) for v in (0.3, -0.4, 0.9)])
    assert gender_kept(_FakeGender(), outs, src).tolist() == [True, False, True]
    pairs = gender_kept(_FakeGender(), outs[:2], -outs[:2])  # one input per output
    assert pairs.tolist() == [False, False]
    with pytest.raises(ValueError, match="2 inputs for 3 outputs"):
        gender_kept(_FakeGender(), outs, outs[:2])


class _NoGender(PairDataset):
    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        del item["source_gender"]
        return item


def test_training_task_needs_gender_labels_to_hold_gender():
    from pada.aging.train import PadaTask, PadaTaskOptions

    fr = Frozen(*frozen_set())
    task = PadaTask(PadaTaskOptions(sample_faces=0, pada={"hold_gender": True}), diffae=fr.diffae, vl=fr.vl,
                    age_critic=fr.age_critic, id_critic=fr.id_critic, dataset=_NoGender(8))
    with pytest.raises(PadaError, match="hold_gender=true needs gender labels"):
        task.build()


def test_age_direction_with_gender_held_undoes_an_age_gender_mix():
    from pada.aging.baseline import LinearAgeDirection

    g = torch.Generator().manual_seed(1)
    w_true, g_dir = torch.randn(64, generator=g) * 0.02, torch.randn(64, generator=g)
    ages = torch.rand(400, generator=g) * 60 + 20
    male = (torch.rand(400, generator=g) < (ages - 10) / 70).float()  # the old are mostly men
    z = ages[:, None] * w_true + male[:, None] * g_dir + 0.01 * torch.randn(400, 64, generator=g)
    plain = LinearAgeDirection.fit(z, ages).direction
    held = LinearAgeDirection.fit(z, ages, covariates=male).direction
    cos = torch.nn.functional.cosine_similarity
    # the plain direction is partly "becoming a man"
    assert float(cos(plain, g_dir, dim=0)) > 0.3 and float(cos(plain, w_true, dim=0)) < 0.9
    assert float(cos(held, w_true, dim=0)) > 0.99
    torch.testing.assert_close(held, w_true, atol=2e-3, rtol=0)
    with pytest.raises(PadaError, match="explain the ages completely"):
        LinearAgeDirection.fit(z, ages, covariates=ages)
    with pytest.raises(PadaError, match="method='regression'"):
        LinearAgeDirection.fit(z, ages, method="class_means", covariates=male)


def test_train_hold_shows_the_losses_the_held_edit():
    from pada.aging.config import LossConfig
    from pada.aging.objective import PadaObjective
    from pada.aging.train import PadaTask, PadaTaskOptions
    from test_aging_helpers import pair_batch

    fr = Frozen(*frozen_set())

    def task(**pada):
        options = PadaTaskOptions(sample_faces=0, pada=pada, loss={"train_hold": True, "lambda_dir": 1.0})
        return PadaTask(options,
                        diffae=fr.diffae, vl=fr.vl, age_critic=fr.age_critic, id_critic=fr.id_critic,
                        dataset=PairDataset(8))

    with pytest.raises(PadaError, match="train_hold=true needs --pada-set hold_gender=true"):
        task().build()
    t = task(hold_gender=True)
    t.build()
    rows = t.model.modulation.held_directions
    assert t.objective.age_direction is not None
    model = tiny_model(init_gain=0.5, hold_gender=True)
    model.modulation.held_directions.copy_(rows)
    batch = pair_batch(6)
    obj = PadaObjective(model, fr, LossConfig(train_hold=True))
    z_src = fr.diffae.encode(batch["source"]).float()
    e = torch.randn(6, 32)
    held = obj._modulate(z_src, e, torch.zeros(6, 32)).detach()
    assert float(((held - z_src) @ rows.T).abs().max()) < 1e-5
    free = PadaObjective(model, fr, LossConfig())._modulate(z_src, e, torch.zeros(6, 32)).detach()
    assert float(((free - z_src) @ rows.T).abs().max()) > 1e-3
    losses = obj(batch, torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["total"])
