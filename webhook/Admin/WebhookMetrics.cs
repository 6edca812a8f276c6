using Prometheus;

namespace BackendTls.Webhook.Admin;

/// <summary>The webhook's metrics, prefixed <c>backendtls_webhook_</c>; one registry per host.</summary>
internal sealed class WebhookMetrics
{
    public WebhookMetrics()
    {
        Registry = Metrics.NewCustomRegistry();
        // process_working_set_bytes, dotnet_total_memory_bytes, GC counts: what a memory alert needs.
        DotNetStats.Register(Registry);
        var factory = Metrics.WithCustomRegistry(Registry);
        Admissions = factory.CreateCounter("backendtls_webhook_admissions_total",
            "AdmissionReviews answered, by result (injected, updated, unchanged, skipped, error) and reason.", ["result", "reason"]);
        Duration = factory.CreateHistogram("backendtls_webhook_admission_duration_seconds",
            "Time to answer an AdmissionReview.",
            new HistogramConfiguration { Buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5] });
        CertificateExpiry = factory.CreateGauge("backendtls_webhook_certificate_expiry_timestamp_seconds",
            "Unix time at which the webhook's serving certificate expires.");
        CertificateReloads = factory.CreateCounter("backendtls_webhook_certificate_reloads_total",
            "Serving certificate loads, by result.", ["result"]);
    }

    public CollectorRegistry Registry { get; }

    public Counter Admissions { get; }

    public Histogram Duration { get; }

    public Gauge CertificateExpiry { get; }

    public Counter CertificateReloads { get; }
}
