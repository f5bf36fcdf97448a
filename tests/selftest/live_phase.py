"""One live phase's run as the self-tests of a real server or shop read it (test_systemd_server.py,
test_docker_shop_faults.py): the terminal an operator reads, and the ledger entry the run wrote."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Phase:
    name: str
    output: str
    entry: dict
    seconds: float

    @property
    def verdict(self) -> str:
        return self.entry["verdict"]

    @property
    def causes(self) -> list[str]:
        return [c["item"] for c in self.entry.get("causes") or []]

    def evidence(self, item: str) -> dict:
        return self.entry["items"][item]["evidence"]

    def outcome(self, item: str) -> str | None:
        return self.entry["items"].get(item, {}).get("outcome")

    def message(self, item: str) -> str:
        """The item's whole failure message, as the HTML report has it."""
        return self.entry["items"][item]["message"] or ""

    def cause(self, item: str) -> str:
        """The cause's one line, as the terminal's verdict and the ledger have it."""
        found = [c for c in self.entry.get("causes") or [] if c["item"] == item]
        assert found, f"{item} is not a cause of {self.name}: {self.causes}\n{self.output[-4000:]}"
        return found[0]["message"]

    def says(self, *texts: str) -> bool:
        return all(text in self.output for text in texts)

    def production_now(self) -> list[str]:
        return [line.removeprefix("production now: ") for line in self.output.splitlines()
                if line.startswith("production now: ")]

    def tail(self) -> str:
        return self.output[-5000:]
