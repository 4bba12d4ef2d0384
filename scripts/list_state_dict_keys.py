#!/usr/bin/env python3
"""Lists a torchvision model's state_dict: one line per tensor, `name dtype shape`.

Needs: pip install torch torchvision
Usage: python3 scripts/list_state_dict_keys.py resnet18 > tests/fixtures/resnet18_state_dict.txt
"""
import sys
import torchvision

model = torchvision.models.get_model(sys.argv[1], weights=None)
params = sum(p.numel() for p in model.parameters())
print(f"# torchvision.models.{sys.argv[1]}: {params} parameters; name dtype shape")
for name, t in model.state_dict().items():
    print(name, str(t.dtype).replace("torch.", ""), list(t.shape))
