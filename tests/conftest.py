"""Suite-wide settings: one torch thread per test process.

The suite's models are tiny; on a 2-core machine, 2 intra-op threads mostly add
synchronisation (measured: ResNet-50 fwd+bwd at batch 2 took 7.8 s with 2 threads under
load, 1.4 s with 1).
"""

import torch

torch.set_num_threads(1)
