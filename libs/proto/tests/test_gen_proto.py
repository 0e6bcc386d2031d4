"""tools/gen_proto.py on a throw-away proto tree: layout, import rewriting, determinism
and the --check verdicts."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]

ALPHA = """syntax = "proto3";
package hdhub.alpha.v1;
import "google/protobuf/timestamp.proto";
message Thing {
  string id = 1;
  google.protobuf.Timestamp created_at = 2;
}
"""
BETA = """syntax = "proto3";
package hdhub.beta.v1;
import "hdhub/alpha/v1/alpha.proto";
service BetaService {
  rpc GetThing(GetThingRequest) returns (hdhub.alpha.v1.Thing);
}
message GetThingRequest {
  string id = 1;
}
"""


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "tools" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen_proto = _tool()


@pytest.fixture
def protos(tmp_path: Path) -> Path:
    root = tmp_path / "proto"
    for svc, text in (("alpha", ALPHA), ("beta", BETA)):
        (root / "hdhub" / svc / "v1").mkdir(parents=True)
        (root / "hdhub" / svc / "v1" / f"{svc}.proto").write_text(text)
    return root


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gen_proto.py"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_generates_modules_stubs_and_packages_under_hdhub_proto(protos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run("--proto-dir", protos, "--out-dir", out).returncode == 0

    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "alpha/__init__.py",
        "alpha/v1/__init__.py",
        "alpha/v1/alpha_pb2.py",
        "alpha/v1/alpha_pb2.pyi",
        "alpha/v1/alpha_pb2_grpc.py",
        "alpha/v1/alpha_pb2_grpc.pyi",
        "beta/__init__.py",
        "beta/v1/__init__.py",
        "beta/v1/beta_pb2.py",
        "beta/v1/beta_pb2.pyi",
        "beta/v1/beta_pb2_grpc.py",
        "beta/v1/beta_pb2_grpc.pyi",
    ]
    for path in out.rglob("*_pb2*"):
        text = path.read_text()
        assert "from hdhub.alpha" not in text and "import hdhub.alpha" not in text, path
    assert "from hdhub.proto.alpha.v1 import alpha_pb2" in (out / "beta/v1/beta_pb2.py").read_text()
    # The wire names stay the proto package's.
    assert "/hdhub.beta.v1.BetaService/GetThing" in (out / "beta/v1/beta_pb2_grpc.py").read_text()


def test_generated_modules_import_each_other_as_hdhub_proto(protos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert _run("--proto-dir", protos, "--out-dir", out).returncode == 0
    probe = f"""
import hdhub.proto
hdhub.proto.__path__.append({str(out)!r})
from hdhub.proto.beta.v1 import beta_pb2, beta_pb2_grpc
from hdhub.proto.alpha.v1 import alpha_pb2
thing = alpha_pb2.Thing(id="t1")
assert beta_pb2.DESCRIPTOR.services_by_name["BetaService"].full_name == "hdhub.beta.v1.BetaService"
assert beta_pb2_grpc.BetaServiceStub
print(type(thing).__module__)
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hdhub.proto.alpha.v1.alpha_pb2"


def test_output_is_deterministic(protos: Path) -> None:
    assert gen_proto.generate(protos) == gen_proto.generate(protos)


def test_check_passes_on_fresh_code_and_lists_what_is_stale(protos: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _run("--proto-dir", protos, "--out-dir", out)
    assert _run("--check", "--proto-dir", protos, "--out-dir", out).returncode == 0

    (out / "alpha/v1/alpha_pb2.py").write_text("# edited by hand\n")
    (out / "gamma/v1").mkdir(parents=True)
    (out / "gamma/v1/gamma_pb2.py").write_text("# left over from a deleted proto\n")
    (out / "beta/v1/beta_pb2.pyi").unlink()
    result = _run("--check", "--proto-dir", protos, "--out-dir", out)
    assert result.returncode == 1
    assert "stale: alpha/v1/alpha_pb2.py" in result.stderr
    assert "not generated from any .proto: gamma/v1/gamma_pb2.py" in result.stderr
    assert "missing: beta/v1/beta_pb2.pyi" in result.stderr

    # Regenerating repairs all three, and removes the package of the deleted proto.
    assert _run("--proto-dir", protos, "--out-dir", out).returncode == 0
    assert _run("--check", "--proto-dir", protos, "--out-dir", out).returncode == 0
    assert not (out / "gamma").exists()


def test_nothing_to_generate_is_fresh_only_when_nothing_was_generated(tmp_path: Path) -> None:
    empty = tmp_path / "proto"
    empty.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "__init__.py").write_text("")  # hdhub/proto/__init__.py is not the tool's
    assert gen_proto.generate(empty) == {}
    assert _run("--check", "--proto-dir", empty, "--out-dir", out).returncode == 0
    (out / "alpha/v1").mkdir(parents=True)
    (out / "alpha/v1/alpha_pb2.py").write_text("")
    assert _run("--check", "--proto-dir", empty, "--out-dir", out).returncode == 1
