"""Training the heads of :func:`rcvlab.analyses.transfer.transfer` (paper 000 §3.3).

* :func:`train_head`: a single-unit linear head on frozen features (``mode="linear"``),
  returned as a :class:`LinearHead` that maps raw features to the measure;
* :func:`finetune_network`: a backbone (pretrained, random or pruned: a :class:`Variant`)
  with GAP and a single-unit head trained end to end, as a :class:`FinetuneNet`.

Both train with MSE and Adam, start the head from the same seeded initialisation
(:func:`init_head`) and keep the epoch with the best validation MAE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rcvlab.data.base import ImageSet
from rcvlab.errors import DataError
from rcvlab.models.registry import Model
from rcvlab.prune.prune import prune


@dataclass(frozen=True)
class Variant:
    """A transfer variant: ``pretrained``, ``scratch`` or ``pruned`` at ``layer``."""

    name: str
    kind: str
    layer: str


def init_head(lin: torch.nn.Linear, generator: torch.Generator) -> torch.nn.Linear:
    """Seeded start of a head, in place: weights uniform in ``±1/sqrt(fan_in)``, bias 0."""
    with torch.no_grad():
        bound = 1.0 / math.sqrt(lin.in_features)
        lin.weight.uniform_(-bound, bound, generator=generator)
        lin.bias.zero_()
    return lin


def train_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    seed: int,
    epochs: int = 5,
    lr: float = 1e-4,
    batch_size: int = 32,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a single-unit linear head with MSE and Adam; keep the epoch with the best val MAE.

    Returns the head (it takes raw features and predicts in the target's units) and a log
    with the per-epoch validation MAE and the chosen epoch.
    """
    g = torch.Generator().manual_seed(int(seed))
    # Centre per column but scale by one number (the RMS of the columns' std): per-column
    # scaling would blow up nearly dead units (std ~1e-5 on the training patches) whenever a
    # test patch activates them.
    xm = x_train.mean(0)
    xs = np.full(x_train.shape[1], float(np.sqrt((x_train.std(0) ** 2).mean())) or 1.0)
    ym, ys = float(y_train.mean()), float(y_train.std()) or 1.0
    xt = torch.tensor((x_train - xm) / xs, dtype=torch.float32)
    yt = torch.tensor((y_train - ym) / ys, dtype=torch.float32)[:, None]
    xv = torch.tensor((x_val - xm) / xs, dtype=torch.float32)
    lin = init_head(torch.nn.Linear(xt.shape[1], 1), g)
    opt = torch.optim.Adam(lin.parameters(), lr=lr)
    best, best_state, history = math.inf, None, []
    for _ in range(epochs):
        order = torch.randperm(len(xt), generator=g)
        for i in range(0, len(xt), batch_size):
            b = order[i : i + batch_size]
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(lin(xt[b]), yt[b])
            loss.backward()
            opt.step()
        with torch.no_grad():
            mae = float(np.abs(lin(xv).numpy()[:, 0] * ys + ym - y_val).mean())
        history.append(mae)
        if mae < best:
            best, best_state = mae, {k: v.clone() for k, v in lin.state_dict().items()}
    lin.load_state_dict(_best(best_state, history))
    head = LinearHead(lin, xm, xs, ym, ys)
    return head, {"val_mae": history, "best_epoch": int(np.argmin(history)) + 1}


def _best(state: dict[str, torch.Tensor] | None, history: list[float]) -> dict[str, torch.Tensor]:
    """The best epoch's weights; one clear error when no epoch had a finite validation MAE."""
    if state is None:
        raise DataError(
            f"The head never reached a finite validation MAE in {len(history)} epoch(s) "
            "(diverged, or non-finite features); lower --lr or check the data."
        )
    return state


class LinearHead(torch.nn.Module):
    """A linear head with the training standardisation folded in (raw features -> area).

    ``forward(x) = lin((x - x_mean) / x_scale)[:, 0] * y_scale + y_mean``.
    """

    def __init__(
        self, lin: torch.nn.Linear, xm: np.ndarray, xs: np.ndarray, ym: float, ys: float
    ) -> None:
        super().__init__()
        self.lin = lin
        self.register_buffer("x_mean", torch.tensor(xm, dtype=torch.float32))
        self.register_buffer("x_scale", torch.tensor(xs, dtype=torch.float32))
        self.register_buffer("y_mean", torch.tensor(ym, dtype=torch.float32))
        self.register_buffer("y_scale", torch.tensor(ys, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin((x - self.x_mean) / self.x_scale)[:, 0] * self.y_scale + self.y_mean


class FinetuneNet(torch.nn.Module):
    """A backbone that ends in GAP plus a single-unit head, trained end to end."""

    def __init__(
        self,
        backbone: torch.nn.Module,
        dim: int,
        data: ImageSet,
        model: Model,
        y_mean: float,
        y_scale: float,
        device: torch.device,
        batch_size: int,
        strict: bool = False,
    ) -> None:
        super().__init__()
        self.backbone, self.dim = backbone, dim
        self.strict = strict
        self.head = torch.nn.Linear(dim, 1)
        self.data, self.model, self.device, self.batch_size = data, model, device, batch_size
        self.y_mean, self.y_scale = y_mean, y_scale
        self.log: dict[str, Any] = {}
        self._unreadable: set[int] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))[:, 0]

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor | None, np.ndarray]:
        """Preprocessed images of ``idx`` (unreadable ones dropped and remembered)."""
        images, ok = [], []
        for i in idx:
            if int(i) in self._unreadable:
                continue
            try:
                images.append(self.data.load(int(i)))
                ok.append(int(i))
            except DataError as e:
                if self.strict:
                    raise DataError(f"{e} (drop --strict to skip unreadable images)") from e
                self._unreadable.add(int(i))
        if not images:
            return None, np.asarray(ok, dtype=np.intp)
        x = self.model.preprocessing(images, mode="resize").to(self.device)
        return x, np.asarray(ok, dtype=np.intp)

    def readable(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray([i for i in idx if int(i) not in self._unreadable], dtype=np.intp)

    @torch.no_grad()
    def predict(self, idx: np.ndarray) -> np.ndarray:
        """Predicted measure (original units) for images ``idx``, in eval mode."""
        self.eval()
        out = []
        for k in range(0, len(idx), self.batch_size):
            x, _ = self.batch(idx[k : k + self.batch_size])
            if x is not None:
                out.append(self(x).cpu().numpy())
        pred = np.concatenate(out) if out else np.zeros(0)
        return pred.astype(np.float64) * self.y_scale + self.y_mean

    def head_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.head.state_dict().items()}


def finetune_network(
    model: Model,
    variant: Variant,
    data: ImageSet,
    y: np.ndarray,
    train: np.ndarray,
    val: np.ndarray,
    *,
    seed: int,
    twin_seed: int,
    epochs: int,
    lr: float,
    batch_size: int,
    device: str | None = None,
    strict: bool = False,
) -> FinetuneNet:
    """Train backbone + head end to end (MSE, Adam) and keep the best epoch by val MAE.

    ``pretrained`` and ``pruned`` start from the model's weights (pruned after their layer),
    ``scratch`` from the architecture's random initialisation (seeded with ``twin_seed``).
    Unreadable images are skipped, or raise with ``strict``.
    """
    from rcvlab.features.extract import choose_device

    dev = choose_device(device)
    source = model.twin("random", twin_seed) if variant.kind == "scratch" else model
    backbone = prune(source, at=variant.layer, copy=True)
    ym, ys = float(y[train].mean()), float(y[train].std()) or 1.0
    net = FinetuneNet(backbone, backbone.out_dim, data, model, ym, ys, dev, batch_size, strict)
    g = torch.Generator().manual_seed(int(seed))
    init_head(net.head, g)
    net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    best, best_state, history = math.inf, None, []
    for _ in range(epochs):
        net.train()
        order = train[torch.randperm(len(train), generator=g).numpy()]
        for k in range(0, len(order), batch_size):
            x, ok = net.batch(order[k : k + batch_size])
            if x is None or len(ok) < 2:  # BatchNorm needs two images in train mode
                continue
            t = torch.tensor((y[ok] - ym) / ys, dtype=torch.float32, device=dev)
            opt.zero_grad()
            torch.nn.functional.mse_loss(net(x), t).backward()
            opt.step()
        pred = net.predict(val)  # marks unreadable images, so readable() matches pred
        v = net.readable(val)
        if v.size == 0:
            raise DataError("No readable validation image is left; check the data's images.")
        mae = float(np.abs(pred - y[v]).mean())
        history.append(mae)
        if mae < best:
            best = mae
            best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
    net.load_state_dict(_best(best_state, history))
    net.log = {"val_mae": history, "best_epoch": int(np.argmin(history)) + 1}
    return net


__all__ = ["FinetuneNet", "LinearHead", "Variant", "finetune_network", "init_head", "train_head"]
