using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using BackendTls.Webhook.Admission;
using BackendTls.Webhook.Injection;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace BackendTls.Webhook.Index;

/// <summary>Whether a request for the index may have it: 200, or 401/403 with what is wrong.</summary>
internal sealed record IndexAccessDecision(int Status, string? Problem)
{
    public static readonly IndexAccessDecision Allowed = new(StatusCodes.Status200OK, null);
}

/// <summary>Who may read the destination index.</summary>
internal interface IIndexAccess
{
    Task<IndexAccessDecision> DecideAsync(string token, CancellationToken cancellationToken);
}

/// <summary>
/// The index lists Service and endpoint addresses cluster-wide, so only injected sidecars get it: the
/// bearer token must pass TokenReview for the audience <c>backendtls-index</c> (kubelet projects such a
/// token into injected pods only, but any pod could ask for one), and belong to a namespace labelled for
/// injection, or name (bound tokens carry the pod's name) a pod the injector changed. Decisions are kept by
/// the token's hash for a while: a sidecar polls with the same token, which kubelet rotates well before it
/// expires.
/// </summary>
internal sealed class KubernetesIndexAccess(IKubernetes client, INamespaceInjectionSource namespaces, TimeProvider time) : IIndexAccess
{
    public const string Audience = SidecarTemplate.IndexTokenAudience;
    private const string PodNameExtra = "authentication.kubernetes.io/pod-name";
    private static readonly TimeSpan AllowedFor = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan RefusedFor = TimeSpan.FromSeconds(10);
    private readonly ConcurrentDictionary<string, (IndexAccessDecision Decision, DateTimeOffset Until)> _decisions = new(StringComparer.Ordinal);

    public async Task<IndexAccessDecision> DecideAsync(string token, CancellationToken cancellationToken)
    {
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
        var now = time.GetUtcNow();
        if (_decisions.TryGetValue(key, out var cached) && cached.Until > now)
        {
            return cached.Decision;
        }

        var decision = await DecideUncachedAsync(token, cancellationToken);
        if (_decisions.Count > 10_000)
        {
            _decisions.Clear();
        }

        _decisions[key] = (decision, now + (decision.Problem is null ? AllowedFor : RefusedFor));
        return decision;
    }

    private async Task<IndexAccessDecision> DecideUncachedAsync(string token, CancellationToken cancellationToken)
    {
        var review = await client.AuthenticationV1.CreateTokenReviewAsync(
            new V1TokenReview { Spec = new V1TokenReviewSpec { Token = token, Audiences = [Audience] } }, cancellationToken: cancellationToken);
        var status = review.Status;
        if (status?.Authenticated != true || status.Audiences?.Contains(Audience) != true || status.User?.Username is not { } user)
        {
            return new IndexAccessDecision(StatusCodes.Status401Unauthorized, $"the token is not a valid service-account token for audience {Audience}");
        }

        var parts = user.Split(':');
        if (parts is not ["system", "serviceaccount", var ns, _])
        {
            return new IndexAccessDecision(StatusCodes.Status403Forbidden, $"{user} is not a service account; the index serves injected sidecars only");
        }

        if ((await namespaces.GetAsync(ns, cancellationToken)).Injection == NamespaceInjection.Enabled)
        {
            return IndexAccessDecision.Allowed;
        }

        if (status.User.Extra?.TryGetValue(PodNameExtra, out var pods) == true && pods.FirstOrDefault() is { } podName)
        {
            try
            {
                var pod = await client.CoreV1.ReadNamespacedPodAsync(podName, ns, cancellationToken: cancellationToken);
                if (pod.Metadata.Annotations?.ContainsKey(InjectionLabels.Status) == true)
                {
                    return IndexAccessDecision.Allowed;
                }
            }
            catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
            {
                // gone: refused below
            }

            return new IndexAccessDecision(StatusCodes.Status403Forbidden, $"pod {ns}/{podName} has no injected sidecar; the index serves injected sidecars only");
        }

        return new IndexAccessDecision(StatusCodes.Status403Forbidden,
            $"{user} is not in a namespace labelled {InjectionLabels.Inject}={InjectionLabels.Enabled} and its token names no injected pod; the index serves injected sidecars only");
    }
}
