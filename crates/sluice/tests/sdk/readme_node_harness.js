// Preloaded (`node --require`) before the Node SDK snippet of README.md, for
// tests/doc_snippets.rs.
//
// The snippet runs exactly as written, except that the test has filled in sluice's address
// and the SDK key, with three additions a test needs on a machine that cannot reach Split's
// cloud:
//
// - SplitFactory gets the flag (`sdk`), `auth` and `streaming` base URLs of a fake Split
//   backend on loopback (env SLUICE_SNIPPET_BACKEND) unless the snippet sets them itself. The
//   `events` and `telemetry` URLs are the snippet's own: if it did not point them at sluice,
//   no impression arrives.
// - Every name lookup other than loopback is refused and recorded, so a snippet (or an SDK
//   default) that would reach out to Split's cloud fails the test.
// - Every getTreatment* call is recorded.
//
// At exit it writes (env SLUICE_SNIPPET_REPORT) JSON:
//   {"version", "machineName", "machineIp", "urls", "calls": [{"key", "bucketingKey",
//    "split", "treatment", "properties"}], "refusedHosts": [...]}
// where version is the SDK's SplitSDKVersion header, machineName/machineIp what it sends in
// its SplitSDKMachineName/IP headers (false when it sends none) and urls the base URLs the
// factory uses.
'use strict';

const dns = require('dns');
const fs = require('fs');

const backend = process.env.SLUICE_SNIPPET_BACKEND;
const reportPath = process.env.SLUICE_SNIPPET_REPORT;
if (!backend || !reportPath) {
  throw new Error('SLUICE_SNIPPET_BACKEND and SLUICE_SNIPPET_REPORT must be set');
}
const report = { calls: [], refusedHosts: [] };
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '::1']);

const realLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (LOOPBACK.has(hostname)) return realLookup.apply(this, arguments);
  report.refusedHosts.push(hostname);
  const cb = typeof options === 'function' ? options : callback;
  const err = new Error(`test: no network beyond loopback (${hostname})`);
  err.code = 'ENOTFOUND';
  process.nextTick(cb, err);
  return {};
};

// The package's entry point re-exports this module's SplitFactory through a getter, so
// replacing it here replaces what `require('@splitsoftware/splitio')` hands the snippet.
const factoryModule = require('@splitsoftware/splitio/cjs/factory/node');
const realSplitFactory = factoryModule.SplitFactory;

function splitKey(key) {
  return typeof key === 'object' && key !== null
    ? { key: key.matchingKey, bucketingKey: key.bucketingKey ?? null }
    : { key, bucketingKey: null };
}

function recordCalls(client) {
  for (const name of ['getTreatment', 'getTreatmentWithConfig']) {
    const real = client[name].bind(client);
    client[name] = (key, flag, attributes, options) => {
      const result = real(key, flag, attributes, options);
      report.calls.push({
        ...splitKey(key),
        split: flag,
        treatment: typeof result === 'string' ? result : result.treatment,
        properties: options?.properties ?? null,
      });
      return result;
    };
  }
  return client;
}

factoryModule.SplitFactory = function SplitFactory(config, ...rest) {
  const urls = { sdk: backend, auth: backend, streaming: backend, ...(config.urls || {}) };
  const factory = realSplitFactory({ ...config, urls }, ...rest);
  const { settings } = factory;
  Object.assign(report, {
    version: settings.version,
    machineName: settings.runtime.hostname,
    machineIp: settings.runtime.ip,
    urls: settings.urls,
  });
  // On the server side client() always returns the same client: wrap it once.
  const realClient = factory.client.bind(factory);
  let client;
  factory.client = () => (client ??= recordCalls(realClient()));
  return factory;
};

process.on('exit', () => {
  fs.writeFileSync(reportPath, JSON.stringify(report));
});
