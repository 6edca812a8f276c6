using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using k8s;
using k8s.Models;

namespace BackendTls.Webhook.Index;

/// <summary>Whether a bearer token is a service-account token issued for the index's audience.</summary>
internal interface ITokenReviewer
{
    /// <summary>The token's user (system:serviceaccount:ns:name) when it is valid for the audience; else null.</summary>
    Task<string?> ReviewAsync(string token, CancellationToken cancellationToken);
}

/// <summary>
/// Asks the API server (TokenReview) and remembers the answer by the token's hash for a while: a sidecar
/// polls every 30 s with the same projected token, which kubelet rotates well before it expires.
/// </summary>
internal sealed class KubernetesTokenReviewer(IKubernetes client, TimeProvider time) : ITokenReviewer
{
    public const string Audience = "backendtls-index";
    private static readonly TimeSpan ValidFor = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan InvalidFor = TimeSpan.FromSeconds(10);
    private readonly ConcurrentDictionary<string, (string? User, DateTimeOffset Until)> _cache = new(StringComparer.Ordinal);

    public async Task<string?> ReviewAsync(string token, CancellationToken cancellationToken)
    {
        var key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(token)));
        var now = time.GetUtcNow();
        if (_cache.TryGetValue(key, out var cached) && cached.Until > now)
        {
            return cached.User;
        }

        var review = await client.AuthenticationV1.CreateTokenReviewAsync(
            new V1TokenReview { Spec = new V1TokenReviewSpec { Token = token, Audiences = [Audience] } }, cancellationToken: cancellationToken);
        var user = review.Status?.Authenticated == true && review.Status.Audiences?.Contains(Audience) == true ? review.Status.User?.Username : null;
        if (_cache.Count > 10_000)
        {
            _cache.Clear();
        }

        _cache[key] = (user, now + (user is null ? InvalidFor : ValidFor));
        return user;
    }
}
