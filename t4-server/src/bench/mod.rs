//! `t4 bench`. (Being written.)
