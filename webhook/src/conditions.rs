//! AccessPolicy admission conditions: image registries and digests, label selectors over the
//! pod, and schedule windows in an IANA time zone. Pure: the clock and the time-zone database
//! (compiled in) are inputs, never read from the system.

use std::collections::BTreeMap;

use jiff::civil::{Time, Weekday as JiffWeekday};
use jiff::tz::TimeZoneDatabase;
use k8s_openapi::api::core::v1::Pod;
use passport_crds::access_policy::{
    AccessConditions, ImageConditions, Schedule, TimeWindow, Weekday,
};

/// Which condition a result is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionKind {
    Images,
    PodSelector,
    Schedule,
}

impl ConditionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Images => "images",
            Self::PodSelector => "podSelector",
            Self::Schedule => "schedule",
        }
    }
}

/// The result of one condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionResult {
    pub kind: ConditionKind,
    pub passed: bool,
    /// Plain words: what was checked and why it passed or failed.
    pub message: String,
}

/// Checks every condition that is set, in a fixed order (images, podSelector, schedule).
pub fn check(
    conditions: &AccessConditions,
    pod: &Pod,
    now: jiff::Timestamp,
) -> Vec<ConditionResult> {
    let mut results = Vec::new();
    if let Some(images) = &conditions.images {
        let (passed, message) = check_images(images, pod);
        results.push(ConditionResult {
            kind: ConditionKind::Images,
            passed,
            message,
        });
    }
    if let Some(selector) = &conditions.pod_selector {
        let none = BTreeMap::new();
        let labels = pod.metadata.labels.as_ref().unwrap_or(&none);
        let (passed, message) = match passport_crds::matching::evaluate_selector(selector, labels) {
            Ok(true) => (true, "the pod's labels match podSelector".to_owned()),
            Ok(false) => (
                false,
                format!(
                    "the pod's labels {} do not match podSelector",
                    show_labels(labels)
                ),
            ),
            Err(why) => (false, format!("podSelector is invalid: {why}")),
        };
        results.push(ConditionResult {
            kind: ConditionKind::PodSelector,
            passed,
            message,
        });
    }
    if let Some(schedule) = &conditions.schedule {
        let (passed, message) = check_schedule(schedule, now);
        results.push(ConditionResult {
            kind: ConditionKind::Schedule,
            passed,
            message,
        });
    }
    results
}

fn show_labels(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return "(none)".to_owned();
    }
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// Every image of the pod: init containers (native sidecars included), then containers.
fn images(pod: &Pod) -> impl Iterator<Item = (&str, &str)> {
    pod.spec.iter().flat_map(|spec| {
        spec.init_containers
            .iter()
            .flatten()
            .chain(spec.containers.iter())
            .map(|c| (c.name.as_str(), c.image.as_deref().unwrap_or("")))
    })
}

fn check_images(conditions: &ImageConditions, pod: &Pod) -> (bool, String) {
    for (container, image) in images(pod) {
        if !conditions.allowed_prefixes.is_empty()
            && !conditions
                .allowed_prefixes
                .iter()
                .any(|p| has_image_prefix(image, p))
        {
            return (
                false,
                format!(
                    "container {container} runs image {image:?}, which starts with none of the allowed prefixes {:?}",
                    conditions.allowed_prefixes
                ),
            );
        }
        if conditions.require_digest && !has_digest(image) {
            return (
                false,
                format!(
                    "container {container} runs image {image:?}, which is not pinned by digest (@sha256:...)"
                ),
            );
        }
    }
    let message = match (
        !conditions.allowed_prefixes.is_empty(),
        conditions.require_digest,
    ) {
        (false, false) => "no image rule is set",
        (true, false) => "every image and init image come from an allowed prefix",
        (false, true) => "every image and init image are pinned by digest",
        (true, true) => {
            "every image and init image come from an allowed prefix and are pinned by digest"
        }
    };
    (true, message.to_owned())
}

/// A prefix that does not end in a separator must end at a component boundary: the prefix
/// `registry.example.com/team` admits `registry.example.com/team/app` and
/// `registry.example.com/team:1`, never `registry.example.com/team-evil/app`.
fn has_image_prefix(image: &str, prefix: &str) -> bool {
    let Some(rest) = image.strip_prefix(prefix) else {
        return false;
    };
    prefix.ends_with(['/', ':', '@']) || rest.is_empty() || rest.starts_with(['/', ':', '@'])
}

fn has_digest(image: &str) -> bool {
    image
        .rsplit_once("@sha256:")
        .is_some_and(|(_, hex)| hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
}

fn check_schedule(schedule: &Schedule, now: jiff::Timestamp) -> (bool, String) {
    // The bundled database, never the system's: the answer must not depend on the node.
    let tz = match TimeZoneDatabase::bundled().get(&schedule.time_zone) {
        Ok(tz) => tz,
        Err(_) => return (false, format!("unknown time zone {:?}", schedule.time_zone)),
    };
    let local = now.to_zoned(tz);
    let shown = local.strftime("%a %H:%M").to_string();
    for window in &schedule.windows {
        match in_window(window, local.weekday(), local.time()) {
            Ok(true) => {
                return (
                    true,
                    format!(
                        "{shown} in {} is inside the window {}",
                        schedule.time_zone,
                        show_window(window)
                    ),
                );
            }
            Ok(false) => {}
            Err(why) => return (false, why),
        }
    }
    let windows: Vec<String> = schedule.windows.iter().map(show_window).collect();
    (
        false,
        format!(
            "{shown} in {} is outside every window ({})",
            schedule.time_zone,
            windows.join("; ")
        ),
    )
}

fn show_window(window: &TimeWindow) -> String {
    let days = if window.days.is_empty() {
        "every day".to_owned()
    } else {
        let days: Vec<&str> = window.days.iter().map(|d| day_name(*d)).collect();
        days.join(",")
    };
    format!("{days} {}-{}", window.start, window.end)
}

fn day_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Mon => "Mon",
        Weekday::Tue => "Tue",
        Weekday::Wed => "Wed",
        Weekday::Thu => "Thu",
        Weekday::Fri => "Fri",
        Weekday::Sat => "Sat",
        Weekday::Sun => "Sun",
    }
}

fn to_jiff(day: Weekday) -> JiffWeekday {
    match day {
        Weekday::Mon => JiffWeekday::Monday,
        Weekday::Tue => JiffWeekday::Tuesday,
        Weekday::Wed => JiffWeekday::Wednesday,
        Weekday::Thu => JiffWeekday::Thursday,
        Weekday::Fri => JiffWeekday::Friday,
        Weekday::Sat => JiffWeekday::Saturday,
        Weekday::Sun => JiffWeekday::Sunday,
    }
}

fn parse_hhmm(text: &str) -> Result<Time, String> {
    Time::strptime("%H:%M", text).map_err(|_| format!("{text:?} is not an HH:MM time"))
}

/// Whether local time `time` on `day` falls in `window`. `days` are the days a window starts
/// on, so an overnight window (end before start) starting Friday also covers early Saturday.
fn in_window(window: &TimeWindow, day: JiffWeekday, time: Time) -> Result<bool, String> {
    let start = parse_hhmm(&window.start)?;
    let end = parse_hhmm(&window.end)?;
    let starts_on =
        |d: JiffWeekday| window.days.is_empty() || window.days.iter().any(|w| to_jiff(*w) == d);
    Ok(if start < end {
        starts_on(day) && start <= time && time < end
    } else {
        (starts_on(day) && time >= start) || (starts_on(day.previous()) && time < end)
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn window(days: Vec<Weekday>, start: &str, end: &str) -> TimeWindow {
        TimeWindow {
            days,
            start: start.to_owned(),
            end: end.to_owned(),
        }
    }

    fn at(day: JiffWeekday, hh: i8, mm: i8) -> (JiffWeekday, Time) {
        (day, Time::new(hh, mm, 0, 0).unwrap())
    }

    #[test]
    fn a_day_window_covers_its_start_but_not_its_end() {
        let w = window(vec![Weekday::Mon], "08:00", "18:00");
        let (d, t) = at(JiffWeekday::Monday, 8, 0);
        assert!(in_window(&w, d, t).unwrap());
        let (d, t) = at(JiffWeekday::Monday, 18, 0);
        assert!(!in_window(&w, d, t).unwrap());
        let (d, t) = at(JiffWeekday::Tuesday, 9, 0);
        assert!(!in_window(&w, d, t).unwrap());
    }

    #[test]
    fn an_overnight_window_belongs_to_the_day_it_starts_on() {
        let w = window(vec![Weekday::Fri], "22:00", "02:00");
        let (d, t) = at(JiffWeekday::Saturday, 1, 30);
        assert!(
            in_window(&w, d, t).unwrap(),
            "early Saturday is Friday's window"
        );
        let (d, t) = at(JiffWeekday::Friday, 1, 30);
        assert!(
            !in_window(&w, d, t).unwrap(),
            "early Friday belongs to Thursday"
        );
        let (d, t) = at(JiffWeekday::Friday, 23, 0);
        assert!(in_window(&w, d, t).unwrap());
    }

    #[test]
    fn sunday_night_windows_wrap_into_monday() {
        let w = window(vec![Weekday::Sun], "23:00", "01:00");
        let (d, t) = at(JiffWeekday::Monday, 0, 30);
        assert!(in_window(&w, d, t).unwrap());
    }

    #[test]
    fn image_prefixes_stop_at_a_component_boundary() {
        assert!(has_image_prefix(
            "registry.example.com/team/app:1",
            "registry.example.com/team"
        ));
        assert!(has_image_prefix(
            "registry.example.com/team/app",
            "registry.example.com/team/"
        ));
        assert!(!has_image_prefix(
            "registry.example.com/team-evil/app",
            "registry.example.com/team"
        ));
        assert!(!has_image_prefix("nginx", "registry.example.com/"));
    }

    #[test]
    fn digests_need_sixty_four_hex_digits() {
        let hex = "a".repeat(64);
        assert!(has_digest(&format!("r.io/app@sha256:{hex}")));
        assert!(has_digest(&format!("r.io/app:1.2@sha256:{hex}")));
        assert!(!has_digest("r.io/app@sha256:abc"));
        assert!(!has_digest("r.io/app:latest"));
    }
}
