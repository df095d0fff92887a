"""Run by test_engine.py under torchrun: train a tiny ANT-GAN on 2 CPU processes (gloo)."""
import json
import os
import sys
from pathlib import Path

import torch

from pseudohealthy_lib.engine import TrainConfig, Trainer
from pseudohealthy_lib.methods import get_method

data, out = sys.argv[1], Path(sys.argv[2])
cfg = TrainConfig(method="antgan", steps=4, batch_size=2, size=32, data=data, log_every=1,
                  options={"ngf": 8, "n_blocks": 1, "ndf": 8})
t = Trainer(cfg, out / "run", method=get_method(cfg.method), progress=False)
t.fit()
rank = int(os.environ["RANK"])
params = [float(p.double().sum()) for p in t.method.parameters()]
(out / f"rank{rank}.json").write_text(json.dumps({"world": t.world, "params": params, "batch": t._batch_indices(0)}))
torch.distributed.destroy_process_group()
