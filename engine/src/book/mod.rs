//! Order books: top of book per symbol (from bookTicker) and a full L2 book (from depth updates).

pub mod l2;
pub mod top;

pub use l2::{L2Book, L2Error, L2Outcome};
pub use top::TopOfBook;
