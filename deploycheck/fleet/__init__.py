"""A release across a fleet of shops (issue 17): tenants, waves, the driver that runs them, the summary.

bot-auto-order runs one bot per shop (`scripts/provision_tenant.py` makes `deployments/bot-<slug>-<gateway>/`
with a compose.yml and a bot.env whose DATABASE_URL names the shop's own database, db_<slug>). A release goes
to every shop, in waves, canary first, halting on the first NO-GO.

The parts:

- `tenants.py`: `Tenant` (name, database URL, host spec, service spec, compose file, bot dir, bot.env path,
  the Telegram token's fingerprint; never the token, and the repr and errors mask the database password)
  and the loaders behind `--fleet PATH` (`load_fleet` picks by what PATH is):
  a fleet TOML file (`[defaults]`, then `[[tenant]]` tables: name, database_url or bot_env, host, service,
  compose_file, bot_dir; unknown keys refused), a `deployments/` folder as provision_tenant.py writes it
  (each `bot-<slug>-<gateway>/bot.env` is tenant `<slug>-<gateway>`, service compose:bot with that folder's
  compose.yml; the template's placeholder DATABASE_URL is refused), and via `inventory.py` an Ansible
  inventory (INI with configparser, YAML with PyYAML). `check_fleet` refuses an empty fleet, a name used
  twice and two tenants on one database (server and name; localhost is qualified by the tenant's host).
  Every failure is a `FleetError` naming the file, the tenant, what is wrong and what to do.
- `waves.py`: `plan(tenants, "1,5,all")` (wave sizes, `all` = the rest, last only; a spec that leaves tenants
  out is refused); `Rollout`, the state machine (a wave starts only when the previous one is all GO; a NO-GO
  halts it, its wave-mates keep their own verdicts, later tenants stay "not started"; `rolled_back` for the
  ones `-m rollback` moved back); `run(rollout, run_wave)` drives it with any wave runner (a tenant the runner
  did not report is NO-GO); shared resources: `shared_groups` (tenants on one PostgreSQL server or one bot
  token) and `batches` (a wave split so at most N tenants of one server and one per token run at a time).
- `driver.py`: what `pytest --fleet ...` runs instead of a session: one pytest run per wave (per batch),
  through pytest-xdist, each tenant's verdict read back from its own ledger, the summary written.
- `rehearsal.py`: `--fleet-rehearsal N`: shop1..shopN on one throwaway server, and the planted fault.
- `summary.py`: the fleet summary as data, for the terminal (headline: verdict, how many on the release,
  NO-GO, rolled back, not started; then one aligned line per tenant: name, wave, verdict, deployment id,
  reports path) and as JSON (one tenant object per line).

Inside a wave's run, deploycheck/fleet/plugin.py parametrizes every checklist test by tenant, schedules
pytest-xdist by tenant and binds each worker to its tenant.
"""
