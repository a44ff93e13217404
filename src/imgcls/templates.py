"""The commented starter config that `imgcls init` writes."""
from __future__ import annotations

_STARTER = """\
# imgcls run config — `imgcls config schema` prints every key; `imgcls validate -c {path}` checks the data.
name: {name}                 # names the runs and any cloud resources they create
provider: {provider}            # local | vertex | customvision | azureml | aws (or --provider on the command line)
task: {task}             # multiclass | multilabel

dataset:
  source: {source}           # a folder of <label>/ sub-folders (optionally under train/ validation/ test/),
                             # a Vertex CSV/JSONL import file, or an Azure ML JSONL file
  # test_source: test/       # a separate test set, if you have one

split:                       # deterministic: by image content hash and seed, the same on every provider
  validation: 0.1
  test: 0.2
  seed: 0

train:
  preset: quick              # quick (minutes, frozen backbone) | best (fine-tuning, slower, better)
  budget_minutes: 15
  # node_hours: 8            # cloud training budget (Vertex: 8–800 node hours)

evaluate:
  gates: {{}}                  # e.g. {{accuracy: 0.9, "recall@roses": 0.8}}: evaluate exits 9 when one fails

predict:
  threshold: 0.5
  # thresholds: {{roses: 0.7}} # per-label thresholds

# Provider sections: only the one you use matters. Secrets come from the environment.
# vertex:
#   project: ${{GOOGLE_CLOUD_PROJECT}}
#   location: us-central1
#   staging_bucket: gs://my-bucket/imgcls
# customvision:
#   training_endpoint: ${{VISION_TRAINING_ENDPOINT}}
#   training_key: ${{VISION_TRAINING_KEY}}
#   prediction_endpoint: ${{VISION_PREDICTION_ENDPOINT}}
#   prediction_key: ${{VISION_PREDICTION_KEY}}
#   prediction_resource_id: ${{VISION_PREDICTION_RESOURCE_ID}}
# azureml:
#   subscription_id: ${{AZURE_SUBSCRIPTION_ID}}
#   resource_group: ${{AZURE_RESOURCE_GROUP}}
#   workspace: ${{AZUREML_WORKSPACE}}
# aws:                       # credentials: AWS_PROFILE or the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables
#   region: ${{AWS_REGION:-us-east-1}}
#   bucket: my-bucket        # unset: the run creates imgcls-<run id> and `down` deletes it
"""


def starter_config(name: str, provider: str, source: str, task: str = "multiclass", sections=()) -> str:
    """The starter, with the provider sections named in `sections` switched on (uncommented)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name) or "my-classifier"
    text = _STARTER.format(name=safe, provider=provider, source=source, path=f"{name}.yaml", task=task)
    lines, inside = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("# ") and line[2:].rstrip().endswith(":") and not line[2:].startswith(" "):
            inside = line[2:].split(":")[0] in sections       # "# vertex:" starts a section
        elif not line.startswith("#   "):
            inside = False
        lines.append(line[2:] if inside else line)
    return "".join(lines)
