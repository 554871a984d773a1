# gnuplot /work/main/bench/results/delivery.gp (written by bench/run_bench.sh)
set terminal pngcairo size 800,500 font ",10" noenhanced
set datafile missing "?"
set logscale xy
set xrange [0.625:1600]
set xlabel "subscribers"
set grid
set key top left
set xtics (1, 10, 100, 1000, 10000)
set format y "%.0s%c"
set output "/work/main/bench/results/delivery_msgs_per_s.png"
set title "pg_ws: delivered messages/s (2 CPUs, loopback, pg_ws.so c5d9f7a26d32)"
set ylabel "delivered msgs/s"
plot "/work/main/bench/results/delivery.dat" using 1:(column(2)) with linespoints title "ws://, 1000 events/s", "/work/main/bench/results/delivery.dat" using 1:(column(5)) with linespoints title "wss://, 1000 events/s", "/work/main/bench/results/delivery.dat" using 1:(column(8)) with linespoints title "ws://, transactions of 100 rows", 2000000 with lines dt 2 lc "gray" title "target: 2M msgs/s (100-row transactions)"
set output "/work/main/bench/results/delivery_p99.png"
set title "pg_ws: p99 commit-to-receive latency (2 CPUs, loopback, pg_ws.so c5d9f7a26d32)"
set ylabel "p99 latency (ms)"
set format y "%g"
set yrange [0.1:*]
plot "/work/main/bench/results/delivery.dat" using 1:(column(4)/1000) with linespoints title "ws://, 1000 events/s", "/work/main/bench/results/delivery.dat" using 1:(column(7)/1000) with linespoints title "wss://, 1000 events/s", "/work/main/bench/results/delivery.dat" using 1:(column(9)/1000) with linespoints title "ws://, transactions of 100 rows", 1 with lines dt 2 lc "gray" title "target: 1 ms (1 000 events/s to 100)"
