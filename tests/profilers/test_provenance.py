import json
import re

from profilers import collect_provenance
from profilers._provenance import git_commit


def test_cpu_provenance_records_versions_and_commit():
    facts = collect_provenance("cpu", session_config={"device": "cpu"})
    json.dumps(facts)  # plain data
    assert facts["device"] == "cpu"
    assert facts["amptune_version"]
    import onnxruntime

    assert facts["onnxruntime_version"] == onnxruntime.__version__
    git = facts["amptune_git"]
    assert git["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", git["commit"])
    assert "gpu_name" not in facts  # no GPU facts for a CPU measurement


def test_git_commit_outside_a_repository(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}


def test_cuda_provenance_without_a_gpu_does_not_fail():
    facts = collect_provenance("cuda", provider_options={"use_tf32": "0"})
    assert facts["provider_options"] == {"use_tf32": "0"}
    assert facts["nvml"] == "available" or facts["nvml"].startswith("unavailable")
    assert "cudnn_version" in facts and "cuda_runtime_version" in facts
