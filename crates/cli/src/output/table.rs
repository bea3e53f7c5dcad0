//! Tables as kubectl aligns them (three spaces between columns), with the `STATE` column
//! coloured when colour is on.

use std::io::Write;

use anyhow::Context;

use super::{Output, colour::Colouring, kinds::Printable};

/// Which columns a kind's table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Columns {
    Normal,
    /// `-o wide`: the kind's extra columns too.
    Wide,
}

impl Columns {
    pub(super) fn from_output(output: &Output) -> Columns {
        match output {
            Output::Wide => Columns::Wide,
            _ => Columns::Normal,
        }
    }
}

/// The header every kind with a state names its state column by.
pub(super) const STATE_HEADER: &str = "STATE";

/// The table of `items`: a header line, then a row per item.
pub(super) fn render<K: Printable>(
    items: &[K],
    columns: Columns,
    colouring: Colouring,
) -> anyhow::Result<String> {
    let mut header = K::HEADERS.to_vec();
    if columns == Columns::Wide {
        header.extend_from_slice(K::WIDE_HEADERS);
    }
    let state_column = K::HEADERS.iter().position(|name| *name == STATE_HEADER);
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            let mut row = item.row();
            if let Some(cell) = state_column.and_then(|column| row.get_mut(column)) {
                *cell = colouring.state(cell);
            }
            if columns == Columns::Wide {
                row.extend(item.wide_row());
            }
            row
        })
        .collect();
    aligned(&header, &rows)
}

/// Rows aligned in columns (kubectl's padding; colour codes take no width), without the spaces
/// an empty last cell leaves.
pub(super) fn aligned(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<String> {
    let mut writer = tabwriter::TabWriter::new(Vec::new()).padding(3).ansi(true);
    writeln!(writer, "{}", header.join("\t"))?;
    for row in rows {
        writeln!(writer, "{}", row.join("\t"))?;
    }
    let table = writer.into_inner().context("write the table")?;
    let table = String::from_utf8(table).context("the table as text")?;
    Ok(table
        .lines()
        .map(|line| format!("{}\n", line.trim_end()))
        .collect())
}

#[cfg(test)]
mod tests {
    use flotilla_api::{Cluster, ClusterState, ClusterStatus};
    use flotilla_client::Resource;

    use super::*;

    fn cluster(name: &str, state: ClusterState) -> Cluster {
        let mut cluster = Cluster::new(name, Default::default());
        cluster.status = Some(ClusterStatus {
            state,
            ..ClusterStatus::default()
        });
        cluster
    }

    #[test]
    fn coloured_states_keep_the_columns_aligned() {
        let clusters = [
            cluster("a", ClusterState::Online),
            cluster("long-name", ClusterState::Offline),
        ];
        let plain = render(&clusters, Columns::Normal, Colouring::Off).unwrap();
        let coloured = render(&clusters, Columns::Normal, Colouring::On).unwrap();
        assert!(coloured.contains("\u{1b}[32mOnline\u{1b}[0m"), "{coloured}");
        assert!(!plain.contains('\u{1b}'), "{plain}");
        let without_codes = coloured
            .replace("\u{1b}[32m", "")
            .replace("\u{1b}[90m", "")
            .replace("\u{1b}[0m", "");
        assert_eq!(without_codes, plain);
        assert!(
            plain.starts_with("NAME        STATE     BUNDLES-READY"),
            "{plain}"
        );
    }

    #[test]
    fn wide_adds_the_kinds_extra_columns_after_the_normal_ones() {
        let clusters = [cluster("a", ClusterState::Online)];
        let wide = render(&clusters, Columns::Wide, Colouring::Off).unwrap();
        let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header.len(),
            Cluster::HEADERS.len() + Cluster::WIDE_HEADERS.len()
        );
        assert_eq!(header.last(), Cluster::WIDE_HEADERS.last());
    }
}
