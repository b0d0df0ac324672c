package main

import (
	"context"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// openTracing returns the demo's tracer provider — spans to stdout with
// -trace-stdout, to OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set — and
// its shutdown, which flushes them; nil when neither is asked for. The
// provider is passed to the workers, never installed globally.
func openTracing(ctx context.Context, cfg config) (trace.TracerProvider, func(context.Context) error, error) {
	var opts []sdktrace.TracerProviderOption
	if cfg.traceStdout {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(os.Stdout))
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if cfg.otlp != "" {
		exp, err := otlptracehttp.New(ctx) // reads OTEL_EXPORTER_OTLP_* itself
		if err != nil {
			return nil, nil, err
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	}
	if len(opts) == 0 {
		return nil, func(context.Context) error { return nil }, nil
	}
	opts = append(opts, sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", "headway-demo"))))
	tp := sdktrace.NewTracerProvider(opts...)
	return tp, tp.Shutdown, nil
}
