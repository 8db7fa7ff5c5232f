// The console function's cold start on this machine: a stand-in for the
// Lambda Runtime API on a loopback port hands the binary one API Gateway
// event (events/console/index.json); the figure is process spawn → the
// response posted back (runtime init + Deps + the first answer). Lambda's
// own sandbox start is not included. Printed, not asserted.
//   node bench/cold-start.mjs ../../../target/release/console [runs]
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';

const bin = process.argv[2] ?? '../../../target/release/console';
const runs = Number(process.argv[3] ?? 10);
const event = readFileSync(new URL('../../../../events/console/index.json', import.meta.url), 'utf8');

async function once() {
  return new Promise((resolve, reject) => {
    let started = 0;
    let child;
    const server = createServer((req, res) => {
      if (req.method === 'GET' && req.url.endsWith('/invocation/next')) {
        if (server.served) return; // a second poll: leave it hanging until we kill the process
        server.served = true;
        res.writeHead(200, {
          'content-type': 'application/json',
          'lambda-runtime-aws-request-id': 'bench-1',
          'lambda-runtime-deadline-ms': String(Date.now() + 5000),
          'lambda-runtime-invoked-function-arn': 'arn:aws:lambda:us-east-1:123456789012:function:console',
        });
        res.end(event);
      } else if (req.method === 'POST' && req.url.includes('/invocation/bench-1/response')) {
        const chunks = [];
        req.on('data', (c) => chunks.push(c));
        req.on('end', () => {
          const ms = Number(process.hrtime.bigint() - started) / 1e6;
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
          res.writeHead(202).end();
          child.kill('SIGKILL');
          server.close();
          resolve({ ms, status: body.statusCode });
        });
      } else {
        res.writeHead(404).end();
      }
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      started = process.hrtime.bigint();
      child = spawn(bin, [], {
        env: {
          AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${port}`,
          AWS_LAMBDA_FUNCTION_NAME: 'console',
          AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: '128',
          AWS_LAMBDA_LOG_STREAM_NAME: 'bench',
          AWS_LAMBDA_LOG_GROUP_NAME: 'bench',
          PATH: process.env.PATH,
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      child.on('error', reject);
    });
  });
}

const times = [];
for (let i = 0; i < runs; i++) {
  const r = await once();
  if (r.status !== 200) throw new Error(`status ${r.status}`);
  times.push(r.ms);
}
times.sort((a, b) => a - b);
const med = times[Math.floor(times.length / 2)];
console.log(`FIGURE console cold start (spawn → first response, ${runs} runs): median ${med.toFixed(1)} ms, min ${times[0].toFixed(1)} ms, max ${times.at(-1).toFixed(1)} ms`);
