/*
 * Native tests of the C SDK's JSON helpers on nasty input (unterminated strings, bad
 * escapes, surrogates, deep nesting, unbalanced brackets, overflowing integers, invalid
 * UTF-8, and 200,000 random texts), with exact-length buffers so that AddressSanitizer
 * catches any read past the end:
 *
 *   gcc -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -Wno-attributes \
 *       -I plugins/sdk/c plugins/examples/c/json_test.c plugins/sdk/c/hookwise.c -o /tmp/json_test
 *   /tmp/json_test      # prints "0 failures", exit status 0
 *
 * The host imports are stubbed (nothing here calls them).
 */
#include "hookwise.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
int32_t hw_import_request_read(void *p, int32_t c){(void)p;(void)c;return 0;}
int32_t hw_import_result_read(void *p, int32_t c){(void)p;(void)c;return 0;}
void hw_import_output(const void *p, int32_t l){(void)p;(void)l;}
void hw_import_error(int32_t k, const void *p, int32_t l, int64_t r){(void)k;(void)p;(void)l;(void)r;}
void hw_import_log(int32_t v, const void *p, int32_t l){(void)v;(void)p;(void)l;}
int32_t hw_import_http_send(const void *p, int32_t l){(void)p;(void)l;return 0;}
int32_t hw_import_db_execute(const void *a, int32_t b, const void *c, int32_t d, const void *e, int32_t f){(void)a;(void)b;(void)c;(void)d;(void)e;(void)f;return 0;}
static int fails=0;
#define CHECK(c) do{ if(!(c)){printf("FAIL line %d: %s\n",__LINE__,#c);fails++;} }while(0)
/* exact-length copy so ASan catches reads past the end */
static hw_str dup_span(const char *s){ size_t n=strlen(s); char *m=malloc(n?n:1); memcpy(m,s,n); hw_str r={m,n}; return r;}
static int find(const char *json,const char *key,char **raw){ hw_str o=dup_span(json),v; int r=hw_json_find(o,key,&v); if(raw){*raw=NULL; if(r==1){*raw=malloc(v.len+1);memcpy(*raw,v.ptr,v.len);(*raw)[v.len]=0;}} free((void*)o.ptr); return r;}
static char *gets_(const char *json,const char *key){ hw_str o=dup_span(json); char *r=hw_json_get_string(o,key); free((void*)o.ptr); return r;}
int main(void){
  char *raw;
  CHECK(find("{\"a\":1,\"b\":\"x\"}","b",&raw)==1 && !strcmp(raw,"\"x\"")); free(raw);
  CHECK(find("  {\"a\" : { \"b\" : [1, {\"c\":\"}\"}] }, \"b\" : true } ","b",&raw)==1 && !strcmp(raw,"true")); free(raw);
  CHECK(find("{\"a\":{\"b\":1}}","b",NULL)==0); /* nested key is not top level */
  CHECK(find("{}","a",NULL)==0);
  CHECK(find("[]","a",NULL)==0);
  CHECK(find("","a",NULL)==0);
  CHECK(find("{","a",NULL)==-1);
  CHECK(find("{\"a","a",NULL)==-1);
  CHECK(find("{\"a\":\"unterminated","a",NULL)==-1);
  CHECK(find("{\"a\":\"x\\","a",NULL)==-1);
  CHECK(find("{\"a\":\"x\\u12","a",NULL)==-1);
  CHECK(find("{\"a\":\"x\\q\"}","a",NULL)==-1);
  CHECK(find("{\"a\":[1,2","a",NULL)==-1);
  CHECK(find("{\"a\":[1,2}","a",NULL)==-1);
  CHECK(find("{\"a\":{\"b\":1]}","a",NULL)==-1);
  CHECK(find("{\"a\":tru}","a",NULL)==-1);
  CHECK(find("{\"a\":-}","a",NULL)==-1);
  CHECK(find("{\"a\":1 \"b\":2}","b",NULL)==-1);
  CHECK(find("{\"a\":\"\x01\"}","a",NULL)==-1);
  CHECK(find("{\"x\":1,\"a\":2,\"a\":3}","a",&raw)==1 && !strcmp(raw,"2")); free(raw);
  CHECK(find("{\"\\u0075rl\":\"u\"}","url",&raw)==1 && !strcmp(raw,"\"u\"")); free(raw);
  CHECK(find("{\"ur\\\"l\":1,\"url\":2}","url",&raw)==1 && !strcmp(raw,"2")); free(raw);
  /* deep nesting */
  { char *d=malloc(200000); size_t n=0; n+=sprintf(d,"{\"a\":"); for(int i=0;i<50000;i++) d[n++]='['; for(int i=0;i<50000;i++) d[n++]=']'; n+=sprintf(d+n,",\"b\":1}"); d[n]=0;
    CHECK(find(d,"b",NULL)==-1); free(d); }
  { char d[1000]; size_t n=0; n+=sprintf(d,"{\"a\":"); for(int i=0;i<100;i++) d[n++]='['; for(int i=0;i<100;i++) d[n++]=']'; n+=sprintf(d+n,",\"b\":1}");
    CHECK(find(d,"b",&raw)==1 && !strcmp(raw,"1")); free(raw); }
  /* strings */
  char *s=gets_("{\"a\":\"h\\u00e9\\n\\\"q\\\" \\ud83d\\ude00 \\ud800x \\/\"}","a");
  CHECK(s && !strcmp(s,"h\xc3\xa9\n\"q\" \xf0\x9f\x98\x80 \xef\xbf\xbdx /")); free(s);
  s=gets_("{\"a\":1}","a"); CHECK(s==NULL);
  s=gets_("{\"a\":\"\\u0000z\"}","a"); CHECK(s && s[0]==0 && s[1]=='z'); free(s);
  { hw_str v=dup_span("\"abc\" x"); CHECK(hw_json_decode_string(v,NULL)==NULL); free((void*)v.ptr);}
  { hw_str v=dup_span("\"ab"); CHECK(hw_json_decode_string(v,NULL)==NULL); free((void*)v.ptr);}
  { hw_str v=dup_span("\"a\\ud83d\\"); CHECK(hw_json_decode_string(v,NULL)==NULL); free((void*)v.ptr);}
  { hw_str v=dup_span("\"a\\ud83d\""); char *r=hw_json_decode_string(v,NULL); CHECK(r&&!strcmp(r,"a\xef\xbf\xbd")); free(r); free((void*)v.ptr);}
  /* ints */
  long long i=0; hw_str o;
  o=dup_span("{\"a\":-42}"); CHECK(hw_json_get_int(o,"a",&i)==1 && i==-42); free((void*)o.ptr);
  o=dup_span("{\"a\":9223372036854775807}"); CHECK(hw_json_get_int(o,"a",&i)==1 && i==9223372036854775807LL); free((void*)o.ptr);
  o=dup_span("{\"a\":-9223372036854775808}"); CHECK(hw_json_get_int(o,"a",&i)==1 && i==(-9223372036854775807LL-1)); free((void*)o.ptr);
  o=dup_span("{\"a\":9223372036854775808}"); CHECK(hw_json_get_int(o,"a",&i)==0); free((void*)o.ptr);
  o=dup_span("{\"a\":1.5}"); CHECK(hw_json_get_int(o,"a",&i)==0); free((void*)o.ptr);
  o=dup_span("{\"a\":\"1\"}"); CHECK(hw_json_get_int(o,"a",&i)==0); free((void*)o.ptr);
  /* arrays */
  o=dup_span("[1, [2,3], {\"x\":[]}, \"s\"]"); CHECK(hw_json_array_len(o)==4); hw_str it; CHECK(hw_json_index(o,2,&it)==1 && it.len==8); CHECK(hw_json_index(o,4,&it)==0); free((void*)o.ptr);
  o=dup_span("[ ]"); CHECK(hw_json_array_len(o)==0); free((void*)o.ptr);
  o=dup_span("[1,"); CHECK(hw_json_array_len(o)==-1); CHECK(hw_json_index(o,1,&it)==-1); free((void*)o.ptr);
  o=dup_span("[1,]"); CHECK(hw_json_array_len(o)==-1); free((void*)o.ptr);
  o=dup_span("{}"); CHECK(hw_json_array_len(o)==-1); free((void*)o.ptr);
  /* escaping */
  hw_buf b={0}; hw_buf_json_string(&b,"a\"b\\c\n\x01\xff\xc3\xa9\xed\xa0\x80\xf0\x9f\x98\x80\xc3",18);
  CHECK(!strcmp(b.data,"\"a\\\"b\\\\c\\n\\u0001\\ufffd\xc3\xa9\\ufffd\\ufffd\\ufffd\xf0\x9f\x98\x80\\ufffd\"")); printf("%s\n",b.data);
  /* roundtrip through find/decode */
  { hw_buf j={0}; hw_buf_puts(&j,"{\"k\":"); hw_buf_json_string(&j,"x\"\\\n\t\x02y",7); hw_buf_puts(&j,"}"); char *r=hw_json_get_string((hw_str){j.data,j.len},"k"); CHECK(r&&!strcmp(r,"x\"\\\n\t\x02y")); free(r); hw_buf_free(&j);}
  hw_buf_free(&b);
  /* random garbage never crashes */
  srand(7); const char alpha[]="{}[]\",:\\u0aZ1e-. tfn";
  for(int k=0;k<200000;k++){ size_t n=rand()%24; char *g=malloc(n?n:1); for(size_t q=0;q<n;q++) g[q]=alpha[rand()%(sizeof alpha-1)]; hw_str gs={g,n}; hw_str v; if(hw_json_find(gs,"a",&v)==1){ char *d=hw_json_decode_string(v,NULL); free(d);} hw_json_array_len(gs); hw_json_index(gs,1,&v); long long x; hw_json_get_int(gs,"a",&x); free(g);}
  printf("%d failures\n",fails); return fails!=0;
}
