#!/usr/bin/env python3
"""template.yaml with every function pointing at its prebuilt binary.

`sam build` runs cargo-lambda once per function (15 release builds, silent);
`make lambda-build` builds them all in one cargo invocation into
target/lambda/<binary>/bootstrap. This writes .aws-sam/prebuilt/template.json,
the same template with each function's CodeUri set to that directory and its
BuildMethod metadata dropped, for `sam deploy --template-file`. Fails naming
any function whose binary is missing.
"""
import json
import os
import sys
from cfnlint.decode import decode

root = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
tpl, errors = decode(os.path.join(root, "template.yaml"))
if errors:
    for e in errors:
        print(e, file=sys.stderr)
    sys.exit(1)
missing = []
for name, res in tpl["Resources"].items():
    if res.get("Type") != "AWS::Serverless::Function":
        continue
    binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
    if not binary:
        missing.append(f"{name}: no Metadata.BuildProperties.Binary")
        continue
    code = os.path.join(root, "target", "lambda", binary)
    if not os.path.isfile(os.path.join(code, "bootstrap")) and not os.environ.get("PREBUILT_SKIP_CHECK"):
        missing.append(f"{name}: {code}/bootstrap is missing (make lambda-build)")
    res["Properties"]["CodeUri"] = code
    res.pop("Metadata", None)
if missing:
    print("\n".join(missing), file=sys.stderr)
    sys.exit(1)
out_dir = os.path.join(root, ".aws-sam", "prebuilt")
os.makedirs(out_dir, exist_ok=True)
out = os.path.join(out_dir, "template.json")
with open(out, "w") as f:
    json.dump(tpl, f, indent=1)
print(out)
