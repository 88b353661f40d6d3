//! `clicktrack stats` output: the same numbers as the API, as aligned text tables.

use super::{CampaignStats, CampaignSummary, Count};

/// Text columns are left-aligned, numbers right-aligned.
#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// An aligned table: a header line, then one line per row, columns two spaces apart.
fn table(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|(h, _)| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, ((cell, (_, align)), width)) in cells.iter().zip(headers).zip(&widths).enumerate() {
            if i > 0 {
                text.push_str("  ");
            }
            let pad = " ".repeat(width - cell.chars().count());
            match align {
                Align::Left => {
                    text.push_str(cell);
                    text.push_str(&pad);
                }
                Align::Right => {
                    text.push_str(&pad);
                    text.push_str(cell);
                }
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.iter().map(|(h, _)| *h).collect());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

pub fn campaigns_table(campaigns: &[CampaignSummary]) -> String {
    let rows: Vec<Vec<String>> = campaigns
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.name.clone(),
                c.clicked_count.to_string(),
                c.unique_members.to_string(),
                c.last_click_at.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table(
        &[
            ("ID", Align::Right),
            ("NAME", Align::Left),
            ("CLICKS", Align::Right),
            ("MEMBERS", Align::Right),
            ("LAST CLICK (UTC)", Align::Left),
        ],
        &rows,
    )
}

pub fn campaigns_csv(campaigns: &[CampaignSummary]) -> String {
    let mut out = String::new();
    super::export::write_record(
        &mut out,
        &[
            "id",
            "name",
            "clicked_count",
            "unique_members",
            "last_click_at",
        ],
    );
    for c in campaigns {
        super::export::write_record(
            &mut out,
            &[
                &c.id.to_string(),
                &c.name,
                &c.clicked_count.to_string(),
                &c.unique_members.to_string(),
                c.last_click_at.as_deref().unwrap_or(""),
            ],
        );
    }
    out
}

/// "1 click", "2 clicks": the sentence a reader expects.
pub fn counted(n: i64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn counts_table(title: &str, counts: &[Count]) -> String {
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|c| vec![c.name.clone(), c.clicks.to_string()])
        .collect();
    table(&[(title, Align::Left), ("CLICKS", Align::Right)], &rows)
}

pub fn campaign_stats_table(s: &CampaignStats) -> String {
    let mut out = format!(
        "Campaign {} {:?}: {} all time\n\
         From {} to {} (UTC)\n\
         {}, {}, {}\n\n",
        s.campaign.id,
        s.campaign.name,
        counted(s.campaign.clicked_count, "click", "clicks"),
        s.from,
        s.to,
        counted(s.totals.clicks, "click", "clicks"),
        counted(s.totals.unique_members, "unique member", "unique members"),
        counted(
            s.totals.anonymous_clicks,
            "anonymous click",
            "anonymous clicks"
        ),
    );
    out.push_str(&counts_table("TYPE", &s.by_type));
    out.push('\n');
    out.push_str(&counts_table("TAG", &s.by_tag));
    out.push('\n');
    out.push_str(&counts_table("TARGET", &s.top_targets));
    out.push('\n');
    let members: Vec<Vec<String>> = s
        .top_members
        .iter()
        .map(|m| {
            vec![
                m.uid.clone(),
                m.display_name.clone().unwrap_or_default(),
                m.clicks.to_string(),
            ]
        })
        .collect();
    out.push_str(&table(
        &[
            ("MEMBER", Align::Left),
            ("NAME", Align::Left),
            ("CLICKS", Align::Right),
        ],
        &members,
    ));
    out.push('\n');
    let series: Vec<Vec<String>> = s
        .series
        .iter()
        .map(|p| vec![p.start.clone(), p.clicks.to_string()])
        .collect();
    out.push_str(&table(
        &[("FROM (UTC)", Align::Left), ("CLICKS", Align::Right)],
        &series,
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_click_is_singular() {
        assert_eq!(counted(1, "click", "clicks"), "1 click");
        assert_eq!(counted(0, "click", "clicks"), "0 clicks");
        assert_eq!(
            counted(2, "unique member", "unique members"),
            "2 unique members"
        );
    }

    #[test]
    fn columns_line_up() {
        let campaigns = vec![
            CampaignSummary {
                id: 7,
                name: "Spring sale".into(),
                clicked_count: 12_345,
                unique_members: 9,
                last_click_at: Some("2026-11-25T09:00:00Z".into()),
            },
            CampaignSummary {
                id: 123,
                name: "x".into(),
                clicked_count: 0,
                unique_members: 0,
                last_click_at: None,
            },
        ];
        let text = campaigns_table(&campaigns);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                " ID  NAME         CLICKS  MEMBERS  LAST CLICK (UTC)",
                "  7  Spring sale   12345        9  2026-11-25T09:00:00Z",
                "123  x                 0        0  -",
            ]
        );
    }
}
