#!/usr/bin/env python3
"""Offline checks of template.yaml that cfn-lint cannot make (run by `make validate`):

1. Connection budget: the sum over functions of reserved concurrency x PG_POOL_MAX,
   with the parameters' defaults, stays within DbConnectionBudget's default.
2. Every function's role may read the configuration secret (ReadConfigSecretPolicy).
3. Every function has an Errors and a Throttles alarm.
4. No function environment variable takes a secret: SECRETS_ARN is the only way in.
5. No SQS event source polls with more concurrency than its function may run.
6. infra/samconfig.toml gives every required parameter (and only template parameters)
   in each environment's parameter_overrides.

Prints the budget arithmetic. Parsed with cfn-lint's decoder (it reads CloudFormation tags).
"""
import sys
from cfnlint.decode import decode

SECRET_VARS = {
    "DATABASE_URL", "HMAC_SHARED_SECRET_INSTANTLY", "HMAC_SHARED_SECRET_CALCOM", "WEBHOOK_SECRET",
    "JWT_SECRET", "TWILIO_AUTH_TOKEN", "TWILIO_ACCOUNT_SID", "OUTBOUND_WEBHOOK_URLS",
    "OUTBOUND_WEBHOOK_SECRET", "DIRETRIX_USER", "DIRETRIX_PASS", "WORK_API", "C2S_TOKEN",
    "UNSUBSCRIBE_SECRET", "CAMPAIGN_WEBHOOK_URL", "CAMPAIGN_WEBHOOK_SECRET", "PG_PASSWORD",
}


def main(path):
    tpl, errors = decode(path)
    if errors:
        for e in errors:
            print(e)
        return 1
    params = tpl.get("Parameters", {})
    glob = tpl.get("Globals", {}).get("Function", {})
    resources = tpl["Resources"]

    def value(v):
        if isinstance(v, dict) and set(v) == {"Ref"} and v["Ref"] in params:
            return int(params[v["Ref"]]["Default"])
        return int(v)

    def env(props):
        out = dict(glob.get("Environment", {}).get("Variables", {}))
        out.update(props.get("Environment", {}).get("Variables", {}) or {})
        return out

    functions = {k: r for k, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    failures = []
    total = 0
    rows = []
    def outside_vpc(props):
        # A function with empty VpcConfig lists (the console) reaches no database.
        return (props.get("VpcConfig") or {}).get("SubnetIds") == []

    for name, r in sorted(functions.items()):
        props = r.get("Properties", {})
        if outside_vpc(props):
            continue
        reserved = props.get("ReservedConcurrentExecutions", glob.get("ReservedConcurrentExecutions"))
        if reserved is None:
            failures.append(f"{name}: no reserved concurrency (unbounded connections)")
            continue
        variables = env(props)
        pool = value(variables.get("PG_POOL_MAX", 2))
        n = value(reserved)
        rows.append((name, n, pool, n * pool))
        total += n * pool
        for ev_name, ev in (props.get("Events") or {}).items():
            cap = (ev.get("Properties", {}).get("ScalingConfig") or {}).get("MaximumConcurrency")
            if ev.get("Type") == "SQS" and cap is not None and value(cap) > n:
                failures.append(f"{name}.{ev_name}: MaximumConcurrency {value(cap)} above reserved concurrency {n}")
        leaked = sorted(SECRET_VARS & set(variables))
        if leaked:
            failures.append(f"{name}: secret variables in the environment: {', '.join(leaked)} (put them in the secret)")
    budget = value(params["DbConnectionBudget"]["Default"])
    print("connection budget (parameter defaults): reserved concurrency x PG_POOL_MAX")
    for name, n, pool, c in rows:
        print(f"  {name:<28} {n:>4} x {pool} = {c:>4}")
    print(f"  {'total':<28} {'':>8} = {total:>4}  (DbConnectionBudget {budget})")
    if total > budget:
        failures.append(f"peak connections {total} exceed DbConnectionBudget {budget}")

    policy_roles = {
        r.get("Ref") for r in resources["ReadConfigSecretPolicy"]["Properties"]["Roles"]
    }
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for name, r in functions.items():
        role = r.get("Properties", {}).get("Role")
        role = role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else f"{name}Role"
        if role not in policy_roles and not outside_vpc(r.get("Properties", {})):
            failures.append(f"{name}: role {role} is not in ReadConfigSecretPolicy's Roles")
        for metric in ("Errors", "Throttles"):
            if not any(
                a.get("Namespace") == "AWS/Lambda" and a.get("MetricName") == metric
                and any(d.get("Value") == {"Ref": name} for d in a.get("Dimensions", []))
                for a in alarms
            ):
                failures.append(f"{name}: no {metric} alarm")
    import os
    import tomllib
    samconfig = os.path.join(os.path.dirname(os.path.abspath(path)), "infra", "samconfig.toml")
    with open(samconfig, "rb") as fh:
        conf = tomllib.load(fh)
    required = {k for k, v in params.items() if "Default" not in v}
    for env_name, sections in conf.items():
        if not isinstance(sections, dict) or "deploy" not in sections:
            continue
        overrides = sections["deploy"]["parameters"].get("parameter_overrides", [])
        if isinstance(overrides, str):
            overrides = overrides.split()
        given = {o.split("=", 1)[0] for o in overrides}
        for k in sorted(required - given):
            failures.append(f"samconfig [{env_name}]: required parameter {k} missing")
        for k in sorted(given - set(params)):
            failures.append(f"samconfig [{env_name}]: {k} is not a template parameter")
    for f in failures:
        print(f"check-template: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
