"""Beyond the checklist, in a rehearsal: nothing the bot did left the machine. Its Telegram and Pakasir
calls went to the fakes; any other outbound connection was refused and is listed here."""
import pytest


@pytest.mark.item("14.2+outbound")
def test_nothing_left_the_machine(outbound, evidence):
    if outbound is None:
        pytest.skip("no outbound guard here: a live bot talks to the real Telegram, and the old reference bot "
                    "runs in deploycheck's own environment")
    started, installed, refused = outbound
    evidence.update({"Bot Processes": started, "Guarded": len(installed),
                     "Guarded Commands": sorted({r["command"] for r in installed if r.get("command")})[:10],
                     "Refused Connections": [{k: r.get(k) for k in ("host", "port", "via", "url", "origin")}
                                             for r in refused][:20]})
    if len(installed) < started:
        pytest.fail(f"the outbound guard was installed in {len(installed)} of the {started} bot processes "
                    "started: the others could have reached the internet; check that they start through "
                    "deploycheck's launcher (in a container: with the guard's folder first on PYTHONPATH)", pytrace=False)
    if refused:
        first = refused[0]
        pytest.fail(f"the bot tried {len(refused)} outbound connection(s) that are neither Telegram nor the "
                    f"payment gateway, e.g. {first.get('host')}:{first.get('port')} from {first.get('origin')}: "
                    "all refused (nothing left the machine); in production they would go out: find out why",
                    pytrace=False)
