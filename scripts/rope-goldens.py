"""Float64 transformers goldens for the RoPE scalings EdgeLM reads (RopeTests.scaledRopeMatchesTransformers).

Each variant is a zoo folder of ../shared with its config's rope_parameters replaced; the golden is the mean NLL of
the zoo fixture's window (BOS + 255 text tokens, every text token scored), as the zoo fixtures compute it. Needs torch
and transformers (5.x), so it runs outside CI:  python scripts/rope-goldens.py [SHARED_DIR]
"""
import json
import os
import shutil
import sys
import tempfile

import torch
from transformers import AutoModelForCausalLM

SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared")

# (name, zoo family, rope_parameters); the same list is in RopeTests.
VARIANTS = [
    ("qwen2-yarn4", "qwen2", {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 128}),
    ("qwen2-yarn2-betas", "qwen2", {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 2.0, "original_max_position_embeddings": 256,
                                    "beta_fast": 16.0, "beta_slow": 2.0}),
    ("llama3-yarn8", "llama3", {"rope_type": "yarn", "rope_theta": 500000.0, "factor": 8.0, "original_max_position_embeddings": 64}),
    ("qwen2-yarn-context-ratio", "qwen2", {"rope_type": "yarn", "rope_theta": 1000000.0, "factor": 4.0, "original_max_position_embeddings": 256}),
    ("llama3-yarn8-mscale", "llama3", {"rope_type": "yarn", "rope_theta": 500000.0, "factor": 8.0, "original_max_position_embeddings": 64,
                                       "mscale": 1.0, "mscale_all_dim": 0.5}),
    ("llama3-linear2", "llama3", {"rope_type": "linear", "rope_theta": 500000.0, "factor": 2.0}),
]

out = {}
for name, family, rope in VARIANTS:
    src = os.path.join(SHARED, "models", "zoo", family)
    with tempfile.TemporaryDirectory() as d:
        for f in os.listdir(src):
            if f.endswith(".json") or f.endswith(".safetensors"):
                shutil.copy(os.path.join(src, f), d)
        config = json.load(open(os.path.join(d, "config.json")))
        config["rope_parameters"] = rope
        json.dump(config, open(os.path.join(d, "config.json"), "w"))
        os.remove(os.path.join(d, "config.v4.json"))
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64).eval()
        ids = json.load(open(os.path.join(SHARED, "fixtures", f"zoo-{family}.json")))["perplexity"]["window_ids"]
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="mean").item()
        out[name] = nll
        print(f"{name}: mean NLL {nll!r}")
print(json.dumps(out, indent=1))
