"""Suite-wide test settings.

Torch runs each test with one intra-op thread (override with PADA_TEST_THREADS). The test models are
tiny, so extra threads only add OpenMP synchronisation; on a shared 2-core machine two threads made
single steps 10-20x slower.
"""

import os

import torch

torch.set_num_threads(int(os.environ.get("PADA_TEST_THREADS", "1")))
