"""teardown_plan: what a stack's teardown removes, read from the engine's own listing."""

import pytest
from ansible.errors import AnsibleFilterError
from ansible_collections.tradeops.stack.plugins.filter.teardown import teardown_plan


def listed(name, stack=None, volumes=(), networks=(), binds=()):
    """A container as docker_host_info's verbose listing (GET /containers/json) gives it."""
    labels = {"tradeops.stack": stack} if stack else {}
    mounts = [{"Type": "volume", "Name": v, "Destination": "/data"} for v in volumes]
    mounts += [{"Type": "bind", "Source": b, "Destination": "/x"} for b in binds]
    return {
        "Names": ["/" + name],
        "Labels": labels,
        "Mounts": mounts,
        "NetworkSettings": {"Networks": {n: {} for n in networks}},
    }


def test_removes_the_stacks_containers_volumes_and_networks():
    plan = teardown_plan(
        [
            listed("cdb-postgres", "cdb", volumes=["cdb-pgdata"], networks=["cdb"]),
            listed("cdb-db-writer-blue", "cdb", networks=["cdb", "bridge"], binds=["/var/lib/tradeops/cdb/secrets"]),
        ],
        "cdb",
        ["cdb", "cdb-backend"],
    )
    assert plan == {
        "containers": ["cdb-db-writer-blue", "cdb-postgres"],
        "volumes": ["cdb-pgdata"],
        "networks": ["cdb", "cdb-backend"],
        "kept": {},
    }


def test_a_neighbour_named_like_the_stack_is_not_touched():
    neighbour = listed("cdbx-postgres", "cdbx", volumes=["cdbx-pgdata"], networks=["cdbx"])
    unlabelled = listed("cdb-by-hand", None, volumes=["cdb-scratch"], networks=["cdb-lab"])
    plan = teardown_plan([listed("cdb-redis", "cdb", networks=["cdb"]), neighbour, unlabelled], "cdb")
    assert plan["containers"] == ["cdb-redis"]
    assert plan["volumes"] == [] and plan["networks"] == ["cdb"]


def test_a_volume_or_network_another_container_uses_is_kept_and_says_who():
    plan = teardown_plan(
        [
            listed("cdb-postgres", "cdb", volumes=["shared-data"], networks=["cdb", "shared-net"]),
            listed("other-app", "other", volumes=["shared-data"], networks=["shared-net"]),
        ],
        "cdb",
    )
    assert plan["volumes"] == [] and plan["networks"] == ["cdb"]
    assert plan["kept"] == {"network shared-net": ["other-app"], "volume shared-data": ["other-app"]}


def test_engine_networks_are_never_removed():
    plan = teardown_plan([listed("cdb-x", "cdb", networks=["bridge", "host", "none"])], "cdb", ["bridge"])
    assert plan["networks"] == []


def test_inspect_documents_work_too():
    inspected = {
        "Name": "/cdb-grafana",
        "Config": {"Labels": {"tradeops.stack": "cdb"}},
        "Mounts": [{"Type": "volume", "Name": "cdb-grafana-data"}],
        "NetworkSettings": {"Networks": {"cdb": {}}},
    }
    assert teardown_plan([inspected], "cdb")["volumes"] == ["cdb-grafana-data"]


@pytest.mark.parametrize(("containers", "stack"), [({"a": 1}, "cdb"), (["x"], "cdb"), ([], "")])
def test_bad_input_is_refused_with_a_clear_error(containers, stack):
    with pytest.raises(AnsibleFilterError, match="teardown_plan"):
        teardown_plan(containers, stack)
