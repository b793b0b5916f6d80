//! Plans and their rate limits.

use serde::{Deserialize, Serialize};
use strum::{Display, EnumString, IntoStaticStr};

/// A billing plan. It sets the account's request budget.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, IntoStaticStr, Display, EnumString,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", parse_err_ty = UnknownPlan, parse_err_fn = unknown_plan)]
pub enum Plan {
    /// 100 requests per minute by default.
    #[default]
    Free,
    /// 500 requests per minute by default.
    Starter,
    /// 2,000 requests per minute by default.
    Business,
    /// 10,000 requests per minute by default.
    Pro,
}

impl Plan {
    /// Every plan, cheapest first.
    pub const ALL: [Plan; 4] = [Plan::Free, Plan::Starter, Plan::Business, Plan::Pro];

    /// The plan's name as the API and the CLI spell it.
    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// A name that is not a plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plan {0:?}: expected free, starter, business or pro")]
pub struct UnknownPlan(pub String);

fn unknown_plan(name: &str) -> UnknownPlan {
    UnknownPlan(name.to_owned())
}

/// Requests per minute per account, for each plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanLimits {
    /// Free plan budget.
    pub free: u32,
    /// Starter plan budget.
    pub starter: u32,
    /// Business plan budget.
    pub business: u32,
    /// Pro plan budget.
    pub pro: u32,
}

impl Default for PlanLimits {
    fn default() -> Self {
        Self {
            free: 100,
            starter: 500,
            business: 2_000,
            pro: 10_000,
        }
    }
}

impl PlanLimits {
    /// The budget of `plan`, in requests per minute.
    pub fn per_minute(&self, plan: Plan) -> u32 {
        match plan {
            Plan::Free => self.free,
            Plan::Starter => self.starter,
            Plan::Business => self.business,
            Plan::Pro => self.pro,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_from_their_names_only() {
        for plan in Plan::ALL {
            assert_eq!(plan.as_str().parse::<Plan>(), Ok(plan));
        }
        assert!("Pro".parse::<Plan>().is_err());
        assert!("enterprise".parse::<Plan>().is_err());
    }

    #[test]
    fn default_limits_are_the_published_ones() {
        let limits = PlanLimits::default();
        let budgets: Vec<u32> = Plan::ALL.iter().map(|p| limits.per_minute(*p)).collect();
        assert_eq!(budgets, [100, 500, 2_000, 10_000]);
    }
}
