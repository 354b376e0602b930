//! The receiving end of GitHub's secret-scanning partner program.
