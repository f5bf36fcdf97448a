"""A release across a fleet of shops (issue 17): the foundation, as pure modules with their own self-tests.

bot-auto-order runs one bot per shop (`scripts/provision_tenant.py` makes `deployments/bot-<slug>-<gateway>/`
with a compose.yml and a bot.env whose DATABASE_URL names the shop's own database, db_<slug>). A release goes
to every shop, in waves, canary first, halting on the first NO-GO.

What is built (nothing here is wired into the pytest plugin yet; tests/selftest/test_fleet.py tests it):

- `tenants.py`: `Tenant` (name, database URL, host spec, service spec, compose file, bot dir, bot.env path,
  the Telegram token's fingerprint; never the token, and the repr and errors mask the database password)
  and the loaders behind `--fleet PATH` (`load_fleet` picks by what PATH is):
  a fleet TOML file (`[defaults]`, then `[[tenant]]` tables: name, database_url or bot_env, host, service,
  compose_file, bot_dir; unknown keys refused), a `deployments/` folder as provision_tenant.py writes it
  (each `bot-<slug>-<gateway>/bot.env` is tenant `<slug>-<gateway>`, service compose:bot with that folder's
  compose.yml; the template's placeholder DATABASE_URL is refused), and via `inventory.py` an Ansible
  inventory (INI with configparser; YAML only where PyYAML is installed, which deploycheck's venv does not
  have: an INI inventory or a fleet TOML is the way there). `check_fleet` refuses an empty fleet, a name used
  twice and two tenants on one database (server and name; localhost is qualified by the tenant's host).
  Every failure is a `FleetError` naming the file, the tenant, what is wrong and what to do.
- `waves.py`: `plan(tenants, "1,5,all")` (wave sizes, `all` = the rest, last only; a spec that leaves tenants
  out is refused); `Rollout`, the state machine (a wave starts only when the previous one is all GO; a NO-GO
  halts it, its wave-mates keep their own verdicts, later tenants stay "not started"; `rolled_back` for the
  ones `-m rollback` moved back); `run(rollout, run_wave)` drives it with any wave runner (a tenant the runner
  did not report is NO-GO); shared resources: `xdist_group` (one group per tenant, for `--dist loadgroup`),
  `shared_groups` (tenants on one PostgreSQL server or one bot token) and `batches` (a wave split so at most
  N tenants of one server and one per token run at a time).
- `summary.py`: the fleet summary as data, for the terminal (headline: verdict, how many on the release,
  NO-GO, rolled back, not started; then one aligned line per tenant: name, wave, verdict, deployment id,
  reports path) and as JSON (one tenant object per line).

What remains for issue 17:

1. Plugin options `--fleet PATH`, `--fleet-group NAME` (inventory group), `--waves SPEC`, turning FleetError and
   WaveError into pytest.UsageError.
2. Per-tenant parametrization of every checklist test: `pytest_generate_tests` (or a tenant-scoped fixture
   parametrized indirectly) so each item runs once per tenant with the tenant in its id (`test_x[shop-a-qris]`),
   its report row and its ledger entry; the db/host/service/bot fixtures built from the `Tenant` instead of
   the single-deployment options; each tenant its own reports/<deployment-id>/ (ledger.jsonl, HTML/JSON report,
   signed record), the deployment id derived from the fleet's (e.g. `<id>--<tenant>`). The run state in
   pytest_plugin is per session today and must become per tenant (verdict, gates, "not run: X failed").
3. Running waves through pytest-xdist (not a dependency yet) with `--dist loadgroup`: mark each tenant's items
   `xdist_group(xdist_group(tenant))`; one pytest run per wave (or per `batches` batch), driven by `waves.run`,
   the verdict per tenant read back from each tenant's ledger/report JSON; after a NO-GO the remaining waves
   are not run and the fleet summary is written to reports/<fleet-id>/fleet.json and printed.
4. `--fleet-rehearsal N` (and `--fleet-rehearsal-fault`): one throwaway PostgreSQL server with a database each
   (db_tenant1...), a bot each behind one fake Telegram (one token per bot) and one fake Pakasir; the planted
   fault in a tenant of a chosen wave; done when 5 tenants in waves 1 then 4 is GO and, with the fault in
   wave 2, that wave is NO-GO, tenant 1 stays deployed and the summary says so.
5. `benchmarks/`: 20 tenants rehearsed as a fleet vs 20 single-tenant rehearsals one after another, the
   ratio and where the time goes.
6. README: a fleet section (a fleet file, the wave options, what the summary shows).
"""
