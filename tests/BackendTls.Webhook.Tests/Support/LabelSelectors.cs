using k8s.Models;

namespace BackendTls.Webhook.Tests.Support;

/// <summary>Kubernetes label selector semantics (matchLabels AND matchExpressions), for checking manifests.</summary>
internal static class LabelSelectors
{
    public static bool Matches(V1LabelSelector? selector, IReadOnlyDictionary<string, string> labels)
    {
        if (selector is null)
        {
            return true;
        }

        foreach (var (key, value) in selector.MatchLabels ?? new Dictionary<string, string>())
        {
            if (!labels.TryGetValue(key, out var actual) || actual != value)
            {
                return false;
            }
        }

        foreach (var requirement in selector.MatchExpressions ?? [])
        {
            var has = labels.TryGetValue(requirement.Key, out var actual);
            var ok = requirement.OperatorProperty switch
            {
                "In" => has && requirement.Values.Contains(actual!),
                "NotIn" => !has || !requirement.Values.Contains(actual!),
                "Exists" => has,
                "DoesNotExist" => !has,
                _ => throw new InvalidOperationException($"unknown operator {requirement.OperatorProperty}"),
            };
            if (!ok)
            {
                return false;
            }
        }

        return true;
    }
}
