"""``GET /v1/models`` and the layer table behind it.

``lbc_catalog/catalog_layers.json`` lists, for every architecture at its default arguments, each Linear/Conv2d
layer with its weight shape and whether the default layer policy sparsifies it for M = 4, 8 and 16 (and
why not). The API cannot build models (it never imports torch), so the table is generated from the
engine and this test asserts it is current. After changing a model or the selection rules, regenerate it:

    .venv/bin/python tests/api/test_models_endpoint.py > lbc_catalog/catalog_layers.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from jobs.catalog import ARCHITECTURES
from tests.api.conftest import Service

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "lbc_catalog" / "catalog_layers.json"
M_VALUES = (4, 8, 16)


def build_catalog_layers() -> dict[str, Any]:
    from lbc_core.models import build_model, list_architectures
    from lbc_core.sparsity import NMPattern, select_layers
    from lbc_core.sparsity.selection import weight_layers

    architectures: dict[str, list[dict[str, Any]]] = {}
    for info in list_architectures():
        model = build_model(info.name)
        by_m = {m: select_layers(model, NMPattern(m // 2, m)) for m in M_VALUES}
        layers: dict[str, dict[str, Any]] = {}
        for m, selection in by_m.items():
            for target in selection.targets:
                entry = layers.setdefault(
                    target.name,
                    {
                        "name": target.name,
                        "kind": target.kind,
                        "shape": list(target.shape),
                        "sparsified": {},
                        "reasons": {},
                    },
                )
                entry["sparsified"][str(m)] = True
            for skipped in selection.skipped:
                entry = layers.setdefault(
                    skipped.name,
                    {
                        "name": skipped.name,
                        "kind": skipped.kind,
                        "shape": list(skipped.shape),
                        "sparsified": {},
                        "reasons": {},
                    },
                )
                entry["sparsified"][str(m)] = False
                entry["reasons"][str(m)] = skipped.reason
        architectures[info.name] = [layers[name] for name, _ in weight_layers(model)]
    return {"m_values": list(M_VALUES), "architectures": architectures}


def render() -> str:
    """One layer per line: readable diffs when a model changes."""
    table = build_catalog_layers()
    blocks = []
    for name, layers in table["architectures"].items():
        rows = ",\n".join(f"    {json.dumps(layer)}" for layer in layers)
        blocks.append(f"  {json.dumps(name)}: [\n{rows}\n  ]")
    body = ",\n".join(blocks)
    return f'{{\n "m_values": {json.dumps(table["m_values"])},\n "architectures": {{\n{body}\n }}\n}}\n'


def test_layer_table_is_current() -> None:
    assert json.loads(TABLE.read_text()) == build_catalog_layers(), (
        "lbc_catalog/catalog_layers.json is stale; regenerate it (see this module's docstring)"
    )


def test_models_lists_every_architecture_with_arguments_and_layers(service: Service) -> None:
    alice = service.caller()
    response = service.client.get("/v1/models", headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["m_values"] == [4, 8, 16]
    assert [item["name"] for item in body["items"]] == list(ARCHITECTURES)
    lenet = next(item for item in body["items"] if item["name"] == "lenet5")
    assert lenet["input_size"] == [28, 28]
    assert {arg["name"]: arg["default"] for arg in lenet["args"]} == dict(ARCHITECTURES["lenet5"].defaults)
    assert next(arg for arg in lenet["args"] if arg["name"] == "width")["help"] == "channel width multiplier"
    stem, *_, classifier = lenet["layers"]
    assert stem["sparsified"] == {"4": False, "8": False, "16": False}
    assert stem["reasons"]["4"] == "stem (first layer) kept dense by default"
    assert "classifier" in classifier["reasons"]["16"]
    assert any(layer["sparsified"]["4"] for layer in lenet["layers"])
    mlp = service.client.get("/v1/models/mlp", headers=alice.headers).json()
    assert mlp["input_size"] is None and mlp["layers"][1]["kind"] == "Linear"
    mobilenet = next(item for item in body["items"] if item["name"] == "mobilenetv2")
    assert any("depthwise" in reason for layer in mobilenet["layers"] for reason in layer["reasons"].values())


if __name__ == "__main__":
    sys.stdout.write(render())
