"""Step 2, run migration (7.1-7.5): the right database, the checklist's own command, its output read."""
import pytest

from deploycheck import checklist, deploy
from deploycheck.db import ConnectionFailed, connect
from deploycheck.rehearsal import MIGRATION, RUNNER
from deploycheck.targets import live_dsn

ITEMS = checklist.default()


@pytest.fixture(scope="module")
def env(run, target) -> dict:
    return deploy.migration_env(run.rehearsal, target.dsn)


@pytest.mark.item("7.1")
@pytest.mark.parametrize("name", ITEMS["7.1"].subchecks)
def test_environment_variable_set(env, name, evidence):
    if name not in env and "DATABASE_URL" in env:
        evidence[name] = "not set: DATABASE_URL is used"
        return
    assert env.get(name), f"{name} is not set: export it as in step 7.1 (or set DATABASE_URL)"
    evidence[name] = "set (not shown)" if name == "POSTGRES_PASSWORD" else env[name]


@pytest.mark.item("7.2")
async def test_variables_point_at_the_backed_up_database(env, run, recorded, evidence):
    dsn = live_dsn(env)
    assert dsn, "neither DATABASE_URL nor POSTGRES_HOST/POSTGRES_DB is set: see step 7.1"
    try:
        conn = await connect(dsn)
    except ConnectionFailed as exc:
        pytest.fail(f"the migration's variables do not reach a database: {run.redactor.text(str(exc))}",
                    pytrace=False)
    try:
        now = await deploy.identity(conn)
    finally:
        await conn.close()
    evidence["Database Identity"] = now
    # The newest of preflight's (1.3) and a rollback's (16.5: the restored copy) is the database to migrate.
    before = (recorded("1.3", "16.5") or {}).get("Database Identity")
    assert before, ("preflight recorded no database identity for this deployment: run `pytest -m preflight` "
                    "with the same --deployment-id first")
    differences = deploy.same_database(before, now)
    assert not differences, ("the migration would run on another database than the one preflight backed up:\n  "
                             + "\n  ".join(differences) + "\nFix POSTGRES_*/DATABASE_URL before step 7.3")


@pytest.mark.item("7.3")
async def test_run_migration_script(bot_dir, bot_python, env, run, evidence):
    code, output, seconds = await deploy.run_migration(bot_python, bot_dir, MIGRATION, RUNNER, env,
                                                       run.redactor.text)
    log = run.reports_dir / f"migration-output-{run.stamp}.txt"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(output)
    evidence.update({"Exit Code": code, "Seconds": round(seconds, 2), "Output File": log.name,
                     "Output (end)": output[-1500:]})
    assert code == 0, (f"`python3 {RUNNER} {MIGRATION}` exited with {code}; its output ends with:\n{output[-2500:]}"
                       "\nThe runner applies all or nothing: read the error, then decide between fixing and "
                       "rolling back (pytest -m rollback)")


@pytest.mark.item("7.4")
@pytest.mark.parametrize("check", ITEMS["7.4"].subchecks)
def test_migration_output_reviewed(check, run, recorded, evidence):
    ran = recorded("7.3")
    assert ran, "no migration output recorded: 7.3 must pass first, in this deployment"
    output = (run.reports_dir / ran["Output File"]).read_text()
    problem = deploy.output_problems(output, ran["Exit Code"])[check]
    evidence[check] = problem or "yes"
    assert problem is None, f"{check}: {problem} (see {ran['Output File']})"


@pytest.mark.item("7.5")
def test_migration_completion_recorded(recorded, evidence):
    ran = recorded("7.3")
    evidence["Migration Time"] = f"{ran['Seconds']} s" if ran else None
    evidence["Status"] = "success" if ran else "failed"
    assert ran, "7.3 (run migration script) did not pass in this deployment"
