"""Every kind of bad spec gets a message naming the field and what would be valid."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from haven.domain.errors import ValidationError, ValidationErrors
from haven.specs import load_spec, load_spec_bytes, validate
from haven.specs.loader import MAX_SPEC_BYTES

EXAMPLE = Path(__file__).parents[3] / "examples" / "three-tier.yaml"


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


def problems(data: Any) -> list[str]:
    """All messages for ``data`` (shape and cross-resource checks)."""
    raw = yaml.safe_dump(data).encode() if not isinstance(data, bytes) else data
    try:
        spec = load_spec_bytes(raw)
        validate(spec.resources)
    except ValidationErrors as exc:
        return [str(e) for e in exc.errors]
    except ValidationError as exc:
        return [str(exc)]
    return []


def test_the_example_is_valid() -> None:
    assert problems(example()) == []


def test_invalid_yaml_names_line_and_column() -> None:
    msgs = problems(b"sites:\n  - name: a\n    driver: [libvirt\n")
    assert len(msgs) == 1 and "invalid YAML at line" in msgs[0]


def test_list_where_a_mapping_belongs() -> None:
    assert problems(b"- sites\n- groups\n") == [
        "(document): expected a mapping of kinds (sites, repositories, policies, groups, "
        "plans), got a list"
    ]
    data = example()
    data["groups"][0]["members"][0]["hooks"] = ["sync"]
    assert problems(data) == ["groups.shop.members[0].hooks: expected a mapping, got a list"]


@pytest.mark.parametrize(
    ("rpo", "expected"),
    [
        ("-5m", "policies.gold.rpo: '-5m' is negative"),
        (-300, "policies.gold.rpo: -300 is negative"),
        (
            "5 parsecs",
            "policies.gold.rpo: '5 parsecs' is not a duration (a non-negative number "
            "with unit s, m, h, d or w",
        ),
        (0, "policies.gold.rpo: 0 must be greater than zero"),
    ],
)
def test_bad_rpo(rpo: object, expected: str) -> None:
    data = example()
    data["policies"][0]["rpo"] = rpo
    msgs = problems(data)
    assert len(msgs) == 1 and msgs[0].startswith(expected), msgs


def test_stage_depending_on_itself() -> None:
    data = example()
    data["plans"][0]["stages"][1]["depends_on"] = ["app"]
    assert problems(data) == [
        "plans.shop.stages[1].depends_on: server 'app' is in this stage; a stage cannot depend "
        "on itself"
    ]


def test_boot_order_cycle() -> None:
    data = example()
    data["plans"][0]["stages"][0]["depends_on"] = ["web"]
    msgs = problems(data)
    assert len(msgs) == 1 and "boot-order cycle: " in msgs[0]
    assert msgs[0].startswith("plans.shop.stages[1].depends_on")
    assert "app -> db -> web -> app" in msgs[0]


def test_unknown_server_lists_known_ones() -> None:
    data = example()
    data["plans"][0]["stages"][1]["depends_on"] = ["db2"]
    assert problems(data) == [
        "plans.shop.stages[1].depends_on: unknown server 'db2' (known: app, db, web)"
    ]


def test_two_groups_claiming_the_same_server() -> None:
    data = example()
    second = dict(copy.deepcopy(data["groups"][0]), name="shop2", members=[{"server": "db"}])
    data["groups"].append(second)
    assert problems(data) == [
        "groups.shop2.members[0]: server 'db' at site 'site-a' is already in group 'shop'; "
        "a server belongs to one group"
    ]


def test_duplicate_names() -> None:
    data = example()
    data["policies"].append(copy.deepcopy(data["policies"][0]))
    assert problems(data) == [
        "policies[1].name: duplicate name 'gold' (also policies[0]); names are unique per kind"
    ]


def test_unknown_field_lists_valid_fields() -> None:
    data = example()
    data["policies"][0]["rpoo"] = "5m"
    msgs = problems(data)
    assert msgs == [
        "policies.gold: unknown field 'rpoo' (valid fields: bandwidth_limit, consistency, "
        "data_path, freeze_timeout, interval, name, retention, rpo, tier, warm_standby)"
    ]


def test_wrong_types_and_enum_values() -> None:
    data = example()
    data["policies"][0]["warm_standby"] = "yes please"
    data["policies"][0]["tier"] = "platinum"
    msgs = problems(data)
    assert "policies.gold.tier: 'platinum' is not allowed; use 'gold', 'silver' or 'bronze'" in msgs
    assert any(
        m.startswith("policies.gold.warm_standby: input should be a valid boolean") for m in msgs
    )


def test_dangling_references() -> None:
    data = example()
    data["groups"][0]["policy"] = "platinum"
    data["groups"][0]["target"] = "site-z"
    msgs = problems(data)
    assert "groups.shop.policy: unknown policy 'platinum' (known: gold)" in msgs
    assert "groups.shop.target: unknown site 'site-z' (known: site-a, site-b)" in msgs


def test_server_missing_from_every_stage() -> None:
    data = example()
    del data["plans"][0]["stages"][2]
    assert problems(data) == [
        "plans.shop.stages: server 'web' of group 'shop' is in no stage; add it so it is recovered"
    ]


def test_application_consistency_conflicts_with_unquiesced_member() -> None:
    data = example()
    data["policies"][0]["consistency"] = "application"
    data["groups"][0]["members"][1]["quiesce"] = "none"
    msgs = problems(data)
    assert len(msgs) == 1 and msgs[0].startswith("groups.shop.members[1].quiesce: the group's")


def test_oversized_spec_file(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * (10 * 1024 * 1024 // 10))
    with pytest.raises(ValidationError, match=r"spec file is 10.5 MB; the limit is 1024 KiB"):
        load_spec(big)
    assert big.stat().st_size > MAX_SPEC_BYTES


def test_non_utf8_bytes() -> None:
    msgs = problems(b"sites:\n  - name: caf\xe9\n")
    assert msgs == [
        "<stdin>: not valid UTF-8: byte 0xe9 at offset 20 (line 2); save the file as UTF-8"
    ]


def test_yaml_aliases_are_refused() -> None:
    msgs = problems(b"a: &x [1, 2]\nb: *x\n")
    assert len(msgs) == 1 and "aliases" in msgs[0]


def test_empty_spec() -> None:
    assert problems(b"") == ["<stdin>: the spec is empty"]


def test_bad_names() -> None:
    data = example()
    data["sites"][0]["name"] = "Site_A"
    msgs = problems(data)
    assert msgs[0].startswith("sites.Site_A.name: 'Site_A' is not a valid name (lower-case")


def test_probe_fields_must_match_the_type() -> None:
    data = example()
    data["plans"][0]["stages"][0]["gates"] = [{"type": "tcp"}]
    assert problems(data) == ["plans.shop.stages[0].gates[0]: a 'tcp' probe needs 'port'"]


def test_cinder_backup_data_path_needs_openstack_sites() -> None:
    data = example()
    data["policies"][0]["data_path"] = "cinder-backup"
    for field in ("warm_standby", "bandwidth_limit"):  # repository path only: refused here
        data["policies"][0].pop(field)
    msgs = problems(data)
    assert msgs and all(
        m.startswith("groups.shop.policy: policy 'gold' uses data_path") for m in msgs
    )
    assert "needs OpenStack sites" in msgs[0] and "use data_path: repository" in msgs[0]
    for site in data["sites"]:
        site.update(driver="openstack", cloud="c", region=site["name"])
        site.pop("uri", None)
        site.pop("scratch_dir", None)
    assert problems(data) == []


def test_libvirt_site_needs_an_absolute_scratch_dir() -> None:
    data = example()
    del data["sites"][0]["scratch_dir"]
    data["sites"][1]["scratch_dir"] = "relative/scratch"
    msgs = problems(data)
    assert [m.split(":")[0] for m in msgs] == [
        "sites.site-a.scratch_dir",
        "sites.site-b.scratch_dir",
    ]
    assert all("needs 'scratch_dir': an absolute directory on the libvirt host" in m for m in msgs)


def test_scratch_dir_only_applies_to_libvirt_sites() -> None:
    data = example()
    data["sites"][0].update(driver="openstack", cloud="c", region="r")
    data["sites"][0].pop("uri")
    assert problems(data) == ["sites.site-a.scratch_dir: only applies to libvirt sites"]
