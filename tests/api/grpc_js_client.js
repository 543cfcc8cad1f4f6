// A client of the actors API in JavaScript, run by tests/api/test_api_grpc_js.py:
// @grpc/grpc-js with the .proto files that `python -m actors.main protos` writes, loaded
// by @grpc/proto-loader (protobuf.js, which names fields in lowerCamel).
//
//   NODE_PATH=<node_modules> node grpc_js_client.js ADDRESS PROTO_DIR USERNAME PASSWORD
//
// Logs in, then creates, gets, updates, lists, deletes a Widget, counts, and reads the
// change notices; prints every answer as one JSON object on stdout.
"use strict";

const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [address, protoDir, username, password] = process.argv.slice(2);
const definition = loader.loadSync(["actors/services/v1/services.proto"], {
  includeDirs: [protoDir],
  keepCase: false,
  longs: String,
  defaults: false,
  oneofs: true,
});
const pkg = grpc.loadPackageDefinition(definition);
const insecure = grpc.credentials.createInsecure();
const core = new pkg.actors.api.v1.Core(address, insecure);
const widgets = new pkg.actors.services.v1.Widget(address, insecure);
const deadline = () => new Date(Date.now() + 20000);

function call(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata || new grpc.Metadata(), { deadline: deadline() }, (err, reply) =>
      err ? reject(new Error(`${method}: ${err.code} ${err.details}`)) : resolve(reply),
    );
  });
}

function notices(request, metadata, count) {
  return new Promise((resolve, reject) => {
    const seen = [];
    const stream = core.Watch(request, metadata, { deadline: deadline() });
    stream.on("data", (notice) => {
      seen.push(notice);
      if (seen.length === count) {
        stream.cancel();
        resolve(seen);
      }
    });
    stream.on("error", (err) => {
      if (err.code !== grpc.status.CANCELLED) reject(new Error(`Watch: ${err.code} ${err.details}`));
    });
  });
}

async function main() {
  const out = {};
  out.login = await call(core, "Login", { username, password });
  const md = new grpc.Metadata();
  md.set("authorization", `Bearer ${out.login.token}`);
  out.created = await call(widgets, "Create", { object: { name: "from-js", size: 3, weight: 1.5 } }, md);
  const id = out.created.id;
  out.got = await call(widgets, "Get", { id }, md);
  out.updated = await call(widgets, "Update", { object: { id, size: 4 }, nullFields: ["weight"] }, md);
  out.listed = await call(widgets, "List", { orderBy: ["-size"], includeDeleted: true }, md);
  out.deleted = await call(widgets, "Delete", { id }, md);
  out.count = await call(widgets, "Count", {}, md);
  out.notices = await notices({ sinceSeq: 0 }, md, 4);
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  },
);
