import os

# Tests never touch the network: everything they load is built in code or saved to tmp_path first.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

# Tiny models gain nothing from intra-op threads, and on a shared 2-core runner they thrash.
torch.set_num_threads(1)
