using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using BackendTls.Webhook.Admin;
using BackendTls.Webhook.Admission;
using BackendTls.Webhook.Injection;
using BackendTls.Tests.Shared;
using BackendTls.Webhook.Tests.Support;
using Microsoft.Extensions.Logging.Abstractions;

namespace BackendTls.Webhook.Tests.Admission;

/// <summary>
/// Seeded fuzzing of the admission endpoint with mutated reviews of real gateway pods: wrong kinds at random
/// fields, deleted fields, invalid UTF-8, lone surrogates, duplicate names, deep nesting, byte noise. Whatever
/// arrives, the answer is 200 with the review's uid when that uid can be read, 400 otherwise, never an exception.
/// </summary>
public class AdmissionFuzzTests
{
    /// <summary>The CI run; <c>bench/webhook-fuzz.sh</c> runs a million against the real process.</summary>
    public const int Count = 100_000;

    internal static AdmissionEndpoint CreateEndpoint() => new(
        new AdmissionHandler(new InjectorSettings(), new TrustSelectorNamespaceSource(), new StaticCapturePorts([8443]), new WebhookMetrics(), NullLogger<AdmissionHandler>.Instance),
        new WebhookMetrics());

    public static IReadOnlyList<JsonObject> Seeds() =>
        ReviewFuzzer.Seeds(System.IO.Directory.GetFiles(Corpus.Directory, "*.yaml").Select(f => Corpus.Load(Path.GetFileName(f))));

    [Fact]
    public async Task MutatedReviews_NeverFail_UidEchoedWhenReadable_400Otherwise()
    {
        var endpoint = CreateEndpoint();
        var seeds = Seeds();
        var random = new Random(20261201);
        var failures = new List<string>();
        var answered200 = 0;
        var stopwatch = Stopwatch.StartNew();
        for (var i = 0; i < Count && failures.Count < 5; i++)
        {
            var body = ReviewFuzzer.Mutate(seeds[random.Next(seeds.Count)], random);
            string? problem;
            try
            {
                var answer = await endpoint.ReviewAsync(body, CancellationToken.None);
                problem = Judge(body, answer);
                answered200 += answer.Status == 200 ? 1 : 0;
            }
            catch (Exception e)
            {
                problem = $"threw {e.GetType().Name}: {e.Message}";
            }

            if (problem is not null)
            {
                failures.Add($"#{i}: {problem}\n  body: {Encoding.UTF8.GetString(body)[..Math.Min(body.Length, 400)]}");
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.InRange(answered200, Count / 5, Count * 4 / 5); // both branches of the oracle are exercised
        Assert.True(stopwatch.Elapsed < TimeSpan.FromMinutes(2), $"{Count} reviews took {stopwatch.Elapsed}");
    }

    /// <summary>The oracle: an independent reading of the uid, and what the answer must then be.</summary>
    internal static string? Judge(byte[] body, AdmissionEndpoint.Answer answer)
    {
        var uid = ReviewFuzzer.ReadableUid(body);
        if (uid is null)
        {
            return answer.Status == 400 && answer.Body.Length > 1 ? null : $"unreadable uid, expected 400 with a message, got {answer.Status}";
        }

        if (answer.Status != 200 || answer.ContentType != "application/json")
        {
            return $"readable uid {uid}, expected 200 AdmissionReview, got {answer.Status} {Encoding.UTF8.GetString(answer.Body)}";
        }

        var response = JsonNode.Parse(answer.Body)!["response"]!;
        if ((string?)response["uid"] != uid)
        {
            return $"answered uid {(string?)response["uid"]}, expected {uid}";
        }

        var allowed = (bool)response["allowed"]!;
        return allowed || ((string?)response["status"]?["message"])?.Length > 0 ? null : "refused without a message";
    }
}
