//! Host facts, backend selection and the doctor report. No FUSE, no gRPC.
