import { z } from 'zod';
import { flag, headerName, numberFromText, text, url } from './primitives.ts';

/*
 * OpenTelemetry tracing (`tracing`): spans of each request, of the gateway's own steps and of
 * the hop to the MCP server, sent by OTLP/HTTP (JSON). Off by default; when off, nothing of
 * the OpenTelemetry SDK is even loaded (src/ops/tracing.ts).
 *
 * `endpoint` and `service_name` have no default here on purpose: left out, the standard
 * OpenTelemetry variables apply (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT,
 * OTEL_SERVICE_NAME), as every OpenTelemetry-instrumented program reads them.
 */

const otlpEndpoint = url(
  (_, parsed) => (parsed.protocol === 'http:' || parsed.protocol === 'https:' ? undefined : 'must be an http:// or https:// URL'),
  'http://127.0.0.1:4318/v1/traces',
);

const ratio = z.preprocess(numberFromText, z.number({ error: 'must be a number from 0 to 1' }).min(0, { error: 'must be a number from 0 to 1' }).max(1, { error: 'must be a number from 0 to 1' }));

export const tracing = z.strictObject({
  enabled: flag().default(false),
  endpoint: otlpEndpoint.optional(),
  /** Sent with every export (a vendor's API key): secrets, never logged. */
  headers: z.record(headerName, text).default(() => ({})),
  service_name: text.optional(),
  sample_ratio: ratio.default(1),
  propagate_to_upstream: flag().default(true),
});
