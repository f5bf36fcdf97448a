"""The conversation engine: runs a bot profile's steps for one smoke item with a user and an admin (Drivers),
paced like a person, and keeps the transcript (who sent what, what the bot showed) as the evidence.

Pure: no pytest. A step that fails raises CheckFailed saying what was expected and what the bot showed (never
"saw nothing" when it showed something), with the transcript's tail; a spam warning is named as such. A step
the version does not offer is recorded with what the bot showed instead, and the caller decides (an item with
such a step needs an attestation). The product list is read by checks.conversation_list.
"""
from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

from deploycheck.checks import conversation_list, smoke_data
from deploycheck.checks.conversation_profile import PLACEHOLDER, Item, Profile, Step
from deploycheck.failure import CheckFailed
from deploycheck.infra.db import readonly
from deploycheck.telegram.driver import ButtonNotFound, Driver, Message, NoReply, describe_all

TAIL = 40        # transcript lines a failure message carries


class Stop(Exception):
    """The rest of the item cannot be done through the bot (found while running): not offered, stop here."""


@dataclass
class Outcome:
    item: str
    transcript: list[str] = field(default_factory=list)
    values: dict = field(default_factory=dict)
    not_offered: list[dict] = field(default_factory=list)
    timings: list[float] = field(default_factory=list)     # seconds, one per `timed` step
    findings: list[dict] = field(default_factory=list)     # what passed but is worth an operator's look

    def evidence(self) -> dict:
        found = {"Transcript": list(self.transcript)}
        if self.not_offered:
            found["Not Offered"] = list(self.not_offered)
        if self.findings:
            found["Findings"] = list(self.findings)
        return found


class Person:
    """One Telegram account in the conversation, spacing its own actions (anti-spam counts per person)."""

    def __init__(self, role: str, driver: Driver):
        self.role, self.driver, self.last_action = role, driver, 0.0

    async def pace(self, gap: float) -> None:
        wait = self.last_action + gap - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self.last_action = time.monotonic()


class Conversation:
    """`await Conversation(profile, {"user": d1, "admin": d2}, db, gateway).run_item("11.3", run)` -> Outcome.
    The same driver may play both roles (one live account that is an admin): it is paced as one person."""

    def __init__(self, profile: Profile, drivers: dict, db, gateway=None, reply_timeout: float | None = None):
        self.profile, self.db, self.gateway = profile, db, gateway
        self.reply_timeout = reply_timeout or profile.reply_timeout
        by_driver: dict[int, Person] = {}
        self.people = {role: by_driver.setdefault(id(d), Person(role, d)) for role, d in drivers.items()}
        self.outcome = Outcome("")
        self.run: smoke_data.SmokeRun | None = None

    # -- running an item ----------------------------------------------------------------------
    async def run_item(self, item_id: str, run: smoke_data.SmokeRun | None = None) -> Outcome:
        item = self.profile.item(item_id)
        self.outcome, self.run = Outcome(item_id), run
        self.outcome.values = self._base_values(item)
        done = False
        try:
            for n, step in enumerate(item.steps, 1):
                await self.step(n, step)
            done = True
        except Stop:
            done = True
        finally:
            if not done:
                await self._cleanup(item)
        return self.outcome

    def _base_values(self, item: Item) -> dict:
        user = self.people.get("user")
        values = {"first_name": getattr(user.driver, "first_name", "") if user else "",
                  "prefix": self.run.prefix if self.run else "DCSMOKE-", "run": self.run.id if self.run else ""}
        for key, template in item.vars.items():
            values[key] = PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), str(template))
        return values

    async def _cleanup(self, item: Item) -> None:
        """The item stopped half-way: undo what the bot holds open (a wizard swallows the admin's next text).
        Best effort: a cleanup step that fails is noted in the transcript, never raised."""
        for n, step in enumerate(item.cleanup, 1):
            try:
                await self.step(f"cleanup {n}", step)
            except (CheckFailed, Stop, ButtonNotFound, NoReply) as exc:
                self.note(f"cleanup {n} did not work: {str(exc).splitlines()[0][:200]}")

    async def step(self, n, step: Step) -> Message | None:
        """Do one step; returns the message it waited for, if any."""
        action = step.action
        if action == "not_offered":
            self._not_offered(n, step, None)
            return None
        shown = await getattr(self, f"_do_{action}")(n, step)
        if step.get("not_offered"):
            self._not_offered(n, step, shown)
        return shown

    # -- transcript -----------------------------------------------------------------------------
    def note(self, line: str) -> None:
        self.outcome.transcript.append(line)

    def _saw(self, person: Person, message: Message) -> None:
        self.note(f"    {person.role} sees {message.describe()}")

    def fail(self, n, step: Step, found: str) -> CheckFailed:
        meaning = self.fill(step.get("fail"), raw=True)
        tail = self.outcome.transcript[-TAIL:]
        cut = len(self.outcome.transcript) - len(tail)
        head = f"{self.outcome.item}: step {n} ({step.label()}): " + (f"{meaning}: " if meaning else "")
        return CheckFailed(head + found + f". Bot profile {self.profile.name}. Transcript"
                           + (f" (last {TAIL} lines of {len(self.outcome.transcript)})" if cut else "") + ":\n"
                           + "\n".join(tail), evidence=self.outcome.evidence())

    # -- values ---------------------------------------------------------------------------------
    def fill(self, template, raw: bool = False) -> str | None:
        """Put values into a profile text: as they are (raw, for texts sent and SQL) or escaped (patterns)."""
        if template is None:
            return None
        values = self.outcome.values

        def value(match: re.Match) -> str:
            if match.group(1) not in values:
                raise CheckFailed(f"{self.outcome.item}: bot profile {self.profile.name} uses {{{match.group(1)}}}, "
                                  f"which no step set before (known: {', '.join(sorted(values))})")
            text = str(values[match.group(1)])
            return text if raw else re.escape(text)
        return PLACEHOLDER.sub(value, str(template))

    # -- the actions ----------------------------------------------------------------------------
    def person(self, step: Step) -> Person:
        if step.role not in self.people:
            raise CheckFailed(f"{self.outcome.item}: no {step.role} account to play {step.where}")
        return self.people[step.role]

    async def _act(self, n, step: Step, person: Person) -> float:
        """Send or press, paced; returns when it started (for timing). Leftovers are read into the transcript
        first, so a step only matches what the bot showed after it."""
        for message in person.driver.drain():
            self._saw(person, message)
        await person.pace(self.profile.gap)
        started = time.monotonic()
        if "send" in step.fields:
            text = self.fill(step.get("send"), raw=True)
            self.note(f"{n:>2} {person.role} > {text!r}")
            await person.driver.send(text)
            return started
        pattern = self.fill(step.get("press"))
        found = person.driver.find_button(pattern)
        if found is None:
            raise self.fail(n, step, f"no button matching {pattern!r} on screen; the {person.role} sees buttons "
                                     f"{person.driver.visible_buttons()}")
        self.note(f"{n:>2} {person.role} presses [{found[1]}]")
        try:
            await person.driver.click(found[1])
        except ButtonNotFound as exc:
            raise self.fail(n, step, str(exc)) from None
        return started

    async def _do_send(self, n, step: Step) -> Message | None:
        person = self.person(step)
        started = await self._act(n, step, person)
        if not step.get("expect"):
            return None
        message = await self.expect(n, step, person, step.get("expect"))
        if step.get("timed"):
            self.outcome.timings.append(message.received_at - started)
        return message

    _do_press = _do_send

    async def _do_wait(self, n, step: Step) -> Message:
        person = self.person(step)
        self.note(f"{n:>2} {person.role} waits for {step.get('wait')!r}")
        return await self.expect(n, step, person, step.get("wait"))

    async def expect(self, n, step: Step, person: Person, pattern: str) -> Message:
        """The first message matching `pattern` within the timeout; a spam warning or a `fail_on` message
        fails at once; otherwise the failure lists everything the bot showed meanwhile."""
        pattern, fail_on = self.fill(pattern), self.fill(step.get("fail_on"))
        timeout = float(step.get("timeout", self.reply_timeout))
        deadline, seen = time.monotonic() + timeout, []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = await person.driver.next_message(remaining)
            except NoReply:
                break
            seen.append(message)
            self._saw(person, message)
            self._spam(n, step, message)
            if fail_on and re.search(fail_on, message.text):
                raise self.fail(n, step, f"expected {pattern!r}; the bot showed {message.describe()}")
            if re.search(pattern, message.text):
                self._check_buttons(n, step, person, message)
                self._read(n, step, message)
                self._finding(step, message)
                return message
        shown = f"the {person.role} saw {describe_all(seen)}" if seen else "the bot showed nothing at all"
        raise self.fail(n, step, f"expected a message matching {pattern!r} within {timeout:g} s; {shown}")

    def _spam(self, n, step: Step, message: Message) -> None:
        for pattern in self.profile.spam:
            if re.search(pattern, message.text):
                raise self.fail(n, step, f"the bot's anti-spam answered: {message.describe()}, although this "
                                         f"conversation waits {self.profile.gap:g} s between one person's actions "
                                         "(the bot counts paced actions as spam: its anti-spam window is wider "
                                         "than the profile's [pacing] gap)")

    def _check_buttons(self, n, step: Step, person: Person, message: Message) -> None:
        for pattern in step.get("buttons", []):
            if not any(re.search(self.fill(pattern), t) for t in message.button_texts):
                raise self.fail(n, step, f"the message came without an inline button matching {pattern!r}: "
                                         f"{message.describe()}")
        keyboard = [t for row in person.driver.reply_keyboard for t in row]
        for pattern in step.get("keyboard", []):
            if not any(re.search(self.fill(pattern), t) for t in keyboard):
                raise self.fail(n, step, f"no reply keyboard button matching {pattern!r}; the keyboard is "
                                         f"{keyboard}; the message: {message.describe()}")

    def _finding(self, step: Step, message: Message) -> None:
        """An answer that is right but poor (a refusal in the database's raw words): said, not failed."""
        if step.get("finding_if") and re.search(self.fill(step.get("finding_if")), message.text):
            self.outcome.findings.append({"finding": self.fill(step.get("finding"), raw=True) or step.get("finding_if"),
                                          "bot showed": message.describe()})
            self.note(f"    finding: {self.outcome.findings[-1]['finding']}")

    def _read(self, n, step: Step, message: Message) -> None:
        if not step.get("read"):
            return
        match = re.search(self.fill(step.get("read")), message.text)
        if match is None:
            raise self.fail(n, step, f"could not read {step.get('read')!r} from {message.describe()}")
        self.outcome.values.update(match.groupdict())
        self.note(f"    read {match.groupdict()}")

    async def _do_list(self, n, step: Step) -> Message | None:
        return await conversation_list.read(self, n, step, self.person(step))

    async def _do_seed(self, n, step: Step) -> None:
        if self.run is None:
            raise CheckFailed(f"{self.outcome.item}: {step.where} seeds test data, but this item runs without a "
                              "test-data run (only 11.3 to 11.6 write)")
        name = step.get("seed")
        if step.get("fill_page") and not await conversation_list.fill_last_page(self, n, step):
            raise Stop                     # not offered past the bot's list limit (recorded by fill_last_page)
        product = await smoke_data.create_test_product(self.db, self.run, name, contents=int(step.get("contents", 0)),
                                                       active=bool(step.get("active", True)),
                                                       price_rupiah=int(step.get("price", 10000)))
        self.outcome.values.update({f"{name}_id": product["id"], f"{name}_code": product["code"],
                                    f"{name}_name": product["name"], f"{name}_price": product["price_cents"],
                                    f"{name}_content": (product["contents"] or [""])[0]})
        self.note(f"{n:>2} test product {product['code']} {product['name']!r} written (contents "
                  f"{len(product['contents'])}, active {step.get('active', True)})")

    async def _do_pay(self, n, step: Step) -> None:
        order_id = self.fill(step.get("pay"), raw=True)
        if self.gateway is None:
            self._not_offered(n, step, None, what=f"paying order {order_id}: no payment gateway to simulate here "
                                                  "(production's is real); pay a test order by hand")
            raise Stop
        self.note(f"{n:>2} the gateway pays {order_id}")
        try:
            hook = await self.gateway.pay(order_id)
        except Exception as exc:   # the fake gateway's GatewayError, TimeoutError: the cause is in the text
            raise self.fail(n, step, f"the payment could not be made: {exc}") from None
        self.note(f"    the bot's webhook server answered {hook.status} {hook.answer[:120]!r}")
        if hook.status != 200:
            raise self.fail(n, step, f"the bot refused the paid webhook: {hook.status} {hook.answer[:200]!r}")

    async def _do_db(self, n, step: Step) -> None:
        sql, args = self._sql(step.get("db"))
        timeout = float(step.get("timeout", self.profile.db_timeout))
        deadline = time.monotonic() + timeout
        while True:
            async with readonly(self.db):
                row = await self.db.fetchrow(sql, *args)
            if row is not None or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.25)      # the bot may still be writing: poll, up to the timeout
        if row is None:
            raise self.fail(n, step, f"no row within {timeout:g} s for {' '.join(sql.split())!r} with {args}")
        self.outcome.values.update(dict(row))
        self.note(f"{n:>2} database: {dict(row)}")

    def _sql(self, template: str) -> tuple[str, list]:
        """`:name` parameters become $1, $2, ... with the values (never pasted into the SQL text)."""
        names: list[str] = []

        def place(match: re.Match) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"
        sql = re.sub(r"(?<![:\w]):([A-Za-z_]\w*)", place, template)
        missing = [name for name in names if name not in self.outcome.values]
        if missing:
            raise CheckFailed(f"{self.outcome.item}: a database step uses :{missing[0]}, which no step set "
                              f"(known: {', '.join(sorted(self.outcome.values))})")
        return sql, [self.outcome.values[name] for name in names]

    def _not_offered(self, n, step: Step, shown: Message | None, what: str | None = None) -> None:
        """Record a step this bot version does not offer, with what the bot showed instead. If the profile says
        a button is missing (`lacks`) and it is there, the profile is out of date: that is a failure."""
        person = self.people.get(step.role)
        if shown is None and person and person.driver.seen:
            shown = person.driver.seen[-1]
        lacks = step.get("lacks")
        if lacks and person:
            offered = [t for t in person.driver.visible_buttons() if re.search(lacks, t)]
            if offered:
                raise self.fail(n, step, f"the profile says this is not offered, but the bot shows {offered}: "
                                         "this version may offer it; adapt the profile")
        entry = {"item": self.outcome.item, "step": str(n), "what": what or step.get("not_offered"),
                 "bot showed": shown.describe() if shown else "nothing to compare (no screen for it)"}
        self.outcome.not_offered.append(entry)
        self.note(f"{n:>2} NOT OFFERED by this bot version: {entry['what']}; the bot showed {entry['bot showed']}")
