//! List prices of well-known LLM models, for the estimated cost a summary row shows.
//!
//! A span's cost is estimated when its `metadata.model` names a model in [`PRICES`] and its
//! metrics count tokens (what the SDK wrappers log for every LLM call):
//!
//! * `prompt_tokens` are charged at the input price, except the `prompt_cached_tokens` among
//!   them (read from the provider's prompt cache), charged at the cached-input price, and the
//!   `prompt_cache_creation_tokens` (written to it), charged at the cache-write price;
//! * `completion_tokens` at the output price (reasoning tokens are part of them).
//!
//! A model is looked up by its name as logged, then without a `provider/` prefix, then
//! without a version suffix (`-2024-08-06`, `-20241022`, `-latest`, `-001`), so dated
//! snapshots share their family's price. An unknown model has no estimate (never a guess
//! from a similar name: `gpt-4.5-preview` is not `gpt-4`).
//!
//! Prices are USD per million tokens, the providers' published standard-tier list prices
//! (no batch or regional discounts); for models priced by prompt length, the short-prompt
//! price. They change: the table is a dated estimate, not an invoice.

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub cached_input: f64,
    pub cache_write: f64,
    pub output: f64,
}

const fn p(input: f64, cached_input: f64, cache_write: f64, output: f64) -> Price {
    Price {
        input,
        cached_input,
        cache_write,
        output,
    }
}

/// Model families and their prices. A model without a discount for cached input lists its
/// input price there.
pub const PRICES: &[(&str, Price)] = &[
    // OpenAI
    ("gpt-5", p(1.25, 0.125, 1.25, 10.0)),
    ("gpt-5-mini", p(0.25, 0.025, 0.25, 2.0)),
    ("gpt-5-nano", p(0.05, 0.005, 0.05, 0.4)),
    ("gpt-4.1", p(2.0, 0.5, 2.0, 8.0)),
    ("gpt-4.1-mini", p(0.4, 0.1, 0.4, 1.6)),
    ("gpt-4.1-nano", p(0.1, 0.025, 0.1, 0.4)),
    ("gpt-4o", p(2.5, 1.25, 2.5, 10.0)),
    ("gpt-4o-mini", p(0.15, 0.075, 0.15, 0.6)),
    ("gpt-4-turbo", p(10.0, 10.0, 10.0, 30.0)),
    ("gpt-4", p(30.0, 30.0, 30.0, 60.0)),
    ("gpt-3.5-turbo", p(0.5, 0.5, 0.5, 1.5)),
    ("o1", p(15.0, 7.5, 15.0, 60.0)),
    ("o1-mini", p(1.1, 0.55, 1.1, 4.4)),
    ("o3", p(2.0, 0.5, 2.0, 8.0)),
    ("o3-mini", p(1.1, 0.55, 1.1, 4.4)),
    ("o4-mini", p(1.1, 0.275, 1.1, 4.4)),
    // Anthropic
    ("claude-opus-4-1", p(15.0, 1.5, 18.75, 75.0)),
    ("claude-opus-4", p(15.0, 1.5, 18.75, 75.0)),
    ("claude-sonnet-4", p(3.0, 0.3, 3.75, 15.0)),
    ("claude-3-7-sonnet", p(3.0, 0.3, 3.75, 15.0)),
    ("claude-3-5-sonnet", p(3.0, 0.3, 3.75, 15.0)),
    ("claude-3-5-haiku", p(0.8, 0.08, 1.0, 4.0)),
    ("claude-3-opus", p(15.0, 1.5, 18.75, 75.0)),
    ("claude-3-haiku", p(0.25, 0.03, 0.3, 1.25)),
    // Google
    ("gemini-2.5-pro", p(1.25, 0.31, 1.25, 10.0)),
    ("gemini-2.5-flash", p(0.3, 0.075, 0.3, 2.5)),
    ("gemini-2.0-flash", p(0.1, 0.025, 0.1, 0.4)),
    ("gemini-1.5-pro", p(1.25, 0.3125, 1.25, 5.0)),
    ("gemini-1.5-flash", p(0.075, 0.01875, 0.075, 0.3)),
];

fn exact(name: &str) -> Option<Price> {
    PRICES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// `name` without one version suffix, if it has one.
fn unversioned(name: &str) -> Option<&str> {
    if let Some(base) = name.strip_suffix("-latest") {
        return Some(base);
    }
    let (base, last) = name.rsplit_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if last.len() == 8 && digits(last) || last.len() == 3 && digits(last) {
        return Some(base);
    }
    // `-YYYY-MM-DD`
    let (rest, month) = base.rsplit_once('-')?;
    let (family, year) = rest.rsplit_once('-')?;
    (year.len() == 4
        && digits(year)
        && month.len() == 2
        && digits(month)
        && last.len() == 2
        && digits(last))
    .then_some(family)
}

/// The price of `model`, if it is a known model or a dated snapshot of one.
pub fn price(model: &str) -> Option<Price> {
    let model = model.trim().to_ascii_lowercase();
    let name = model.rsplit_once('/').map_or(model.as_str(), |(_, n)| n);
    exact(name).or_else(|| unversioned(name).and_then(exact))
}

/// Token counts of one call, as the SDKs log them in `metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tokens {
    pub prompt: f64,
    pub cached: f64,
    pub cache_write: f64,
    pub completion: f64,
}

/// Estimated USD cost of one call to `model`, if its price is known.
pub fn estimated_cost(model: &str, tokens: Tokens) -> Option<f64> {
    let p = price(model)?;
    let cached = tokens.cached.clamp(0.0, tokens.prompt.max(0.0));
    let write = tokens
        .cache_write
        .clamp(0.0, (tokens.prompt - cached).max(0.0));
    let uncached = (tokens.prompt - cached - write).max(0.0);
    let micro = uncached * p.input
        + cached * p.cached_input
        + write * p.cache_write
        + tokens.completion.max(0.0) * p.output;
    Some(micro / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_share_their_family_price_and_unknown_models_have_none() {
        let four_o = price("gpt-4o").unwrap();
        assert_eq!(price("gpt-4o-2024-08-06"), Some(four_o));
        assert_eq!(price("openai/GPT-4o"), Some(four_o));
        assert_eq!(price("gpt-4o-mini-2024-07-18"), price("gpt-4o-mini"));
        assert_ne!(price("gpt-4o-mini"), Some(four_o));
        assert_eq!(
            price("claude-3-5-sonnet-20241022"),
            price("claude-3-5-sonnet")
        );
        assert_eq!(
            price("claude-3-5-sonnet-latest"),
            price("claude-3-5-sonnet")
        );
        assert_eq!(price("gemini-2.0-flash-001"), price("gemini-2.0-flash"));
        for unknown in [
            "gpt-4.5-preview",
            "gpt-4o-x",
            "llama-3",
            "",
            "-20241022",
            "gpt",
        ] {
            assert_eq!(price(unknown), None, "{unknown}");
        }
        // Every family in the table is reachable and priced sensibly.
        for (name, p) in PRICES {
            assert_eq!(price(name), Some(*p));
            assert!(
                p.cached_input <= p.input && p.input > 0.0 && p.output > 0.0,
                "{name}"
            );
        }
    }

    #[test]
    fn cost_charges_cached_and_written_prompt_tokens_at_their_prices() {
        let t = |prompt, cached, cache_write, completion| Tokens {
            prompt,
            cached,
            cache_write,
            completion,
        };
        // gpt-4o: 1M prompt at 2.50 + 1M completion at 10.
        let c = estimated_cost("gpt-4o", t(1e6, 0.0, 0.0, 1e6)).unwrap();
        assert!((c - 12.5).abs() < 1e-9, "{c}");
        // Half the prompt from the cache: 0.5M at 2.50 + 0.5M at 1.25.
        let c = estimated_cost("gpt-4o", t(1e6, 5e5, 0.0, 0.0)).unwrap();
        assert!((c - 1.875).abs() < 1e-9, "{c}");
        // Claude: 1k read from the cache, 2k written, 1k plain, 100 out.
        let c = estimated_cost(
            "claude-3-5-sonnet-20241022",
            t(4000.0, 1000.0, 2000.0, 100.0),
        );
        let want = (1000.0 * 3.0 + 1000.0 * 0.3 + 2000.0 * 3.75 + 100.0 * 15.0) / 1e6;
        assert!((c.unwrap() - want).abs() < 1e-12);
        // Counts that do not add up never make a negative or inflated cost.
        let c = estimated_cost("gpt-4o", t(10.0, 50.0, 50.0, -5.0)).unwrap();
        assert!((c - 10.0 * 1.25 / 1e6).abs() < 1e-15, "{c}");
        assert_eq!(estimated_cost("my-own-model", t(1.0, 0.0, 0.0, 1.0)), None);
    }
}
