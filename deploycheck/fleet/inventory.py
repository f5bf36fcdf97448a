"""The fleet's tenants, from what `--fleet PATH` names (`load_fleet`): a deployments/ folder or a fleet TOML
(read by tenants.py), or an Ansible inventory, the file operators already keep (read here).

Each inventory host is one tenant; its inventory name is the tenant's name. Many shops on one machine are
written as Ansible does it, one alias each: `shop-a ansible_host=10.0.0.5` and `shop-b ansible_host=10.0.0.5`.
The host's variables (host vars over group vars, deeper groups over shallower, as Ansible merges them) give:

    database_url, bot_env, bot_dir, service, compose_file   (each also as deploycheck_<name>, which wins)
    ansible_host, ansible_user, ansible_port, ansible_connection   -> the tenant's host spec

Two formats: INI (read with configparser: it handles sections, comments and `key=value` lines; a host line
`name k=v k=v` is taken apart with shlex, which keeps quoted values whole) and YAML (all/hosts/vars/children,
read with PyYAML's safe_load: an inventory is data, never code).
"""
from __future__ import annotations

import configparser
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from deploycheck.fleet.tenants import FleetError, Tenant, check_fleet, load_deployments, load_toml, make_tenant
from deploycheck.redact import Redactor

TENANT_VARS = ("database_url", "bot_env", "bot_dir", "service", "compose_file")


@dataclass
class Group:
    hosts: dict[str, dict] = field(default_factory=dict)   # host -> the vars written on it in this group
    vars: dict = field(default_factory=dict)
    children: list[str] = field(default_factory=list)


class Inventory:
    """Groups as Ansible has them, and hosts in the order the file first names them (the canary first)."""

    def __init__(self, source: str):
        self.source = source
        self.groups: dict[str, Group] = {"all": Group(), "ungrouped": Group()}
        self.order: list[str] = []

    def group(self, name: str) -> Group:
        return self.groups.setdefault(name, Group())

    def add_host(self, group: str, host: str, host_vars: dict) -> None:
        self.group(group).hosts.setdefault(host, {}).update(host_vars)
        if host not in self.order:
            self.order.append(host)

    def parents(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {name: set() for name in self.groups}
        for name, group in self.groups.items():
            for child in group.children:
                found.setdefault(child, set()).add(name)
        return found

    def depth(self, name: str, parents: dict[str, set[str]], seen: frozenset = frozenset()) -> int:
        """all is 0; every other group is below it, whether or not the file says so (as in Ansible)."""
        if name == "all":
            return 0
        if name in seen:
            raise FleetError(f"{self.source}: group {name!r} is its own child: break the :children loop")
        return 1 + max((self.depth(p, parents, seen | {name}) for p in parents.get(name, ())), default=0)

    def groups_of(self, host: str) -> set[str]:
        """The groups holding the host, directly or through :children."""
        parents = self.parents()
        found, todo = set(), [name for name, group in self.groups.items() if host in group.hosts]
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo.extend(parents.get(name, ()))
        return found | {"all"}

    def host_vars(self, host: str) -> dict:
        # Ansible's order: group vars from the shallowest group to the deepest (ties by name), then host vars.
        parents = self.parents()
        merged: dict = {}
        for name in sorted(self.groups_of(host), key=lambda g: (self.depth(g, parents), g)):
            merged.update(self.groups[name].vars)
        for group in self.groups.values():
            merged.update(group.hosts.get(host, {}))
        return merged

    def hosts_in(self, group: str | None) -> list[str]:
        if group is None:
            return list(self.order)
        if group not in self.groups:
            raise FleetError(f"{self.source}: has no group {group!r}: name one of {', '.join(sorted(self.groups))}")
        return [host for host in self.order if group in self.groups_of(host)]


def host_spec(name: str, host_vars: dict) -> str:
    """The pytest-testinfra spec of the machine the tenant's bot runs on."""
    if str(host_vars.get("ansible_connection", "")) == "local":
        return "local"
    address = str(host_vars.get("ansible_host") or name)
    user = host_vars.get("ansible_user")
    port = host_vars.get("ansible_port")
    return f"ssh://{user + '@' if user else ''}{address}{':' + str(port) if port else ''}"


def tenants_of(inventory: Inventory, group: str | None, base: Path) -> list[Tenant]:
    tenants = []
    for host in inventory.hosts_in(group):
        host_vars = inventory.host_vars(host)
        settings = {key: host_vars.get(f"deploycheck_{key}", host_vars.get(key)) for key in TENANT_VARS}
        settings = {key: str(value) for key, value in settings.items() if value not in (None, "")}
        settings["host"] = host_spec(host, host_vars)
        tenants.append(make_tenant(inventory.source, host, settings, base))
    return check_fleet(tenants, inventory.source + (f" (group {group})" if group else ""))


def unquote_value(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def read_ini(path: Path) -> Inventory:
    parser = configparser.ConfigParser(allow_no_value=True, delimiters=("=",), interpolation=None, strict=False,
                                       default_section="\0")  # Ansible has no DEFAULT section to inherit from
    parser.optionxform = str  # host and variable names keep their case
    try:
        # Hosts above the first [section] are Ansible's "ungrouped".
        parser.read_string("[ungrouped]\n" + path.read_text(encoding="utf-8"), source=str(path))
    except OSError as exc:
        raise FleetError(f"{path}: cannot be read ({exc.strerror})") from None
    except configparser.Error as exc:
        raise FleetError(Redactor().text(f"{path}: is not an INI inventory ({exc.message.splitlines()[0]}): "
                                         "write [group] sections of `host key=value ...` lines")) from None
    inventory = Inventory(str(path))
    for section in parser.sections():
        name, _, kind = section.partition(":")
        for key, value in parser.items(section):
            if kind == "vars":
                inventory.group(name).vars[key] = unquote_value(value or "")
            elif kind == "children":
                inventory.group(name).children.append(key)
            elif kind:
                raise FleetError(f"{path}: section [{section}]: use [group], [group:vars] or [group:children]")
            else:
                # configparser split the host line at its first '='; put it back together for shlex.
                host, host_vars = host_line(path, key if value is None else f"{key}={value}")
                inventory.add_host(name, host, host_vars)
    return inventory


def host_line(path: Path, line: str) -> tuple[str, dict]:
    try:
        words = shlex.split(line, comments=True)  # `host k=v  # note`: Ansible allows a trailing comment
    except ValueError as exc:
        raise FleetError(f"{path}: host {line.split()[0]!r}: {exc}: close the quote") from None
    host, found = words[0], {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise FleetError(Redactor().text(f"{path}: host {host!r}: {word!r} is not key=value: "
                                             "quote values that hold spaces"))
        found[key] = value
    return host, found


def from_mapping(data, source: str) -> Inventory:
    """A YAML inventory as parsed: top-level groups, each with hosts, vars and children."""
    if not isinstance(data, dict):
        raise FleetError(f"{source}: is not a YAML inventory: start with `all:` and its hosts/children")
    inventory = Inventory(source)
    for name, body in data.items():
        walk_group(inventory, str(name), body)
    return inventory


def walk_group(inventory: Inventory, name: str, body) -> None:
    body = body or {}
    if not isinstance(body, dict) or set(body) - {"hosts", "vars", "children"}:
        raise FleetError(f"{inventory.source}: group {name!r}: give it hosts:, vars: and children: only")
    for host, host_vars in (body.get("hosts") or {}).items():
        if host_vars is not None and not isinstance(host_vars, dict):
            raise FleetError(f"{inventory.source}: host {host!r}: its variables must be a mapping (key: value)")
        inventory.add_host(name, str(host), host_vars or {})
    inventory.group(name).vars.update(body.get("vars") or {})
    for child, child_body in (body.get("children") or {}).items():
        inventory.group(name).children.append(str(child))
        walk_group(inventory, str(child), child_body)


def load_ini(path: Path, group: str | None = None) -> list[Tenant]:
    path = Path(path)
    return tenants_of(read_ini(path), group, path.parent)


def load_yaml(path: Path, group: str | None = None) -> list[Tenant]:
    path = Path(path)
    import yaml
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FleetError(f"{path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise FleetError(Redactor().text(f"{path}: is not valid YAML ({exc})")) from None
    return tenants_of(from_mapping(data, str(path)), group, path.parent)


def load_fleet(path: Path, host: str = "local", group: str | None = None) -> list[Tenant]:
    """--fleet PATH: a deployments/ folder, a fleet .toml, or an Ansible inventory (.yml/.yaml or INI)."""
    path = Path(path)
    if path.is_dir():
        return load_deployments(path, host)
    if not path.is_file():
        raise FleetError(f"{path}: no such file or folder: give a fleet .toml, an inventory or a deployments/ folder")
    if path.suffix == ".toml":
        return load_toml(path)
    if path.suffix in (".yml", ".yaml"):
        return load_yaml(path, group)
    return load_ini(path, group)
