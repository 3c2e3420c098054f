-- wrk script: the shared post.lua (SHARED_POST_LUA: it reads the body from WRK_BODY_FILE and
-- prints the summary line), sending the body as an Open Inference Protocol binary request:
-- a JSON header of WRK_HEADER_LEN bytes, then the tensor's raw bytes.
dofile(os.getenv("SHARED_POST_LUA"))
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.headers["Inference-Header-Content-Length"] = os.getenv("WRK_HEADER_LEN")
