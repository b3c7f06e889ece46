-- wrk script: POST one image as the multipart/form-data field "file", over and over.
--
--   wrk -s bench/multipart.lua URL -- IMAGE_PATH MAX_REQUESTS_PER_THREAD
--
-- The body is built once per thread, in init(). A thread that has had its share of
-- responses sends wrk SIGINT, which ends the run early (wrk's main thread sleeps for
-- the duration and wakes on SIGINT), so a run is bounded in requests as well as in
-- time. done() prints one JSON line for bench/load.py.

local ffi = require("ffi")
ffi.cdef([[
int getpid(void);
int kill(int pid, int sig);
]])

local SIGINT = 2
local boundary = "----pounce-bench-7c1f0e"
local limit = 0
local count = 0
local stopping = false

function init(args)
   local file = assert(io.open(args[1], "rb"))
   local data = file:read("*a")
   file:close()
   limit = tonumber(args[2]) or 0
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
   wrk.body = table.concat({
      "--" .. boundary,
      'Content-Disposition: form-data; name="file"; filename="photo.jpg"',
      "Content-Type: image/jpeg",
      "",
      data,
      "--" .. boundary .. "--",
      "",
   }, "\r\n")
end

function response(status, headers, body)
   count = count + 1
   if limit > 0 and count >= limit and not stopping then
      stopping = true
      ffi.C.kill(ffi.C.getpid(), SIGINT)
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      '{"duration_us": %d, "requests": %d, "bytes": %d, "status_errors": %d, '
         .. '"socket_errors": %d, "timeouts": %d, "p50_us": %d, "p95_us": %d, '
         .. '"p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
      summary.duration, summary.requests, summary.bytes, e.status,
      e.connect + e.read + e.write, e.timeout,
      latency:percentile(50), latency:percentile(95), latency:percentile(99),
      latency.mean, latency.max
   ))
end
