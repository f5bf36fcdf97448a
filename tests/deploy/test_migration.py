"""Step 2, run migration (7.1-7.5): the right database, the checklist's own command, its output read."""
import pytest

from deploycheck import checklist
from deploycheck.checks import review
from deploycheck.checks import window as deploy
from deploycheck.infra.catalog import row_counts
from deploycheck.infra.db import connect
from deploycheck.infra.tunnel import here_side
from deploycheck.record.ledger import write_hashed
from deploycheck.rehearsal.checkout import MIGRATION, RUNNER

ITEMS = checklist.default()


@pytest.mark.item("7.1")
@pytest.mark.parametrize("name", ITEMS["7.1"].subchecks)
def test_environment_variable_set(migration_env, name, evidence):
    env = migration_env
    if name not in env and "DATABASE_URL" in env:
        evidence[name] = "not set: DATABASE_URL is used"
        return
    assert env.get(name), f"{name} is not set: export it as in step 7.1 (or set DATABASE_URL)"
    evidence[name] = "set (not shown)" if name == "POSTGRES_PASSWORD" else env[name]


@pytest.mark.item("7.2")
async def test_variables_point_at_the_backed_up_database(migration_env, target, run, recorded, evidence):
    dsn = deploy.migration_dsn(migration_env)
    assert dsn, "neither DATABASE_URL nor POSTGRES_HOST/POSTGRES_DB is set: see step 7.1"
    # the variables name the database as the bot's host sees it: from here, through the tunnel if any
    conn = await connect(here_side(target, dsn))
    try:
        now = await deploy.identity(conn)
    finally:
        await conn.close()
    evidence["Database Identity"] = now
    # The newest of preflight's (1.3) and a rollback's (16.2 swapped the restored copy in; 16.5 saw it) is the
    # database to migrate.
    before = recorded("1.3", "16.2", "16.5").get("Database Identity")
    assert before, ("preflight recorded no database identity for this deployment: run `pytest -m preflight` "
                    "with the same --deployment-id first")
    differences = deploy.same_database(before, now)
    assert not differences, ("the migration would run on another database than the one preflight backed up:\n  "
                             + "\n  ".join(differences) + "\nFix POSTGRES_*/DATABASE_URL before step 7.3")


@pytest.mark.item("7.3")
async def test_run_migration_script(host, release, migration_env, db, run, evidence):
    code, output, seconds = await deploy.run_migration(host, release, MIGRATION, RUNNER, migration_env,
                                                       run.redactor.text)
    # The bot is still stopped: what the migration itself left (8.4), before the bot's own jobs run again.
    evidence["Rows After"] = await row_counts(db)
    # the checklist's own step: on the bot's server, with the bot's Python (a Docker shop's: the release image's)
    evidence.update({"Ran On": host.name, "Ran With": release.where})
    log, again = run.reports_dir / f"migration-output-{run.stamp}.txt", 2
    while log.exists():  # the rehearsal's redeploy runs 7.3 again: each run's output keeps its own file (and hash)
        log, again = run.reports_dir / f"migration-output-{run.stamp}-{again}.txt", again + 1
    # hashed as written: the signed record rests on this file (7.4 reads it), verify re-hashes it
    evidence.update({"Exit Code": code, "Seconds": round(seconds, 2), "Output File": log.name,
                     "Output SHA-256": write_hashed(log, output), "Output (end)": output[-1500:]})
    if deploy.runner_prompt(output):  # the runner asked on its standard input, and was told
        evidence.update({"Runner Prompt": deploy.runner_prompt(output), "Answer Given": deploy.ANSWER})
    errors = "\n".join(deploy.error_lines(output)) or output[-1500:]
    assert code == 0, (f"the migration failed: `python3 {RUNNER} {MIGRATION}` exited with {code}:\n{errors}\n"
                       f"(whole output: {log.name}). The runner applies all or nothing, so the database is unchanged: "
                       "fix the cause and rerun `pytest -m deploy --execute`, or roll back (`pytest -m rollback --execute`)")


@pytest.mark.item("7.4")
@pytest.mark.parametrize("check", ITEMS["7.4"].subchecks)
async def test_migration_output_reviewed(check, db, expected, run, recorded, evidence):
    """Each sub-check measured in the database against what the release's migration did on the rehearsal's copy
    (or the expected file): the runner's output is the release's own, in its own format, and is evidence."""
    ran = recorded("7.3")
    if "Output File" in ran:
        output = (run.reports_dir / ran["Output File"]).read_text()
        code = ran["Exit Code"]
        evidence["Runner Output (end)"] = output[-1500:]
        said = deploy.output_errors(output, code)
    else:  # run by hand and attested: schema_migrations says how it went
        row = await deploy.applied_migration(db, MIGRATION)
        evidence["Migration Row"] = (f"measured: schema_migrations says {row['migration_name']} {row['status']} at "
                                     f"{row['executed_at']:%Y-%m-%d %H:%M:%S %Z}" if row else "no schema_migrations row")
        code, said = None, None if row and row["status"] == "success" else (
            f"7.3 was attested as done by hand, but schema_migrations has {row or 'no row'} for {MIGRATION}")
    problem = await review.problem(check, db, expected, code, said)
    evidence[check] = problem or review.measured(check, expected)
    where = f" (runner output: {ran['Output File']})" if "Output File" in ran else ""
    assert problem is None, f"{check}: {problem}{where}"


@pytest.mark.item("7.5")
async def test_migration_completion_recorded(db, recorded, evidence):
    seconds = recorded("7.3").get("Seconds")
    if seconds is None:  # run by hand: the runner recorded its own time
        row = await deploy.applied_migration(db, MIGRATION)
        seconds = row["execution_time_ms"] / 1000 if row and row["execution_time_ms"] is not None else None
    evidence["Migration Time"] = f"{seconds} s" if seconds is not None else "not recorded"
    evidence["Status"] = "success"
